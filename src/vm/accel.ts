import { execFile } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

// KVM or TCG. /dev/kvm existing is not enough: in nested or sandboxed setups it can be present
// and even open, yet fail to run a vCPU (seen: QEMU aborting on an MSR write, or a guest that
// never runs). So "usable" is proven by running a guest: a 64 KiB firmware whose reset vector
// writes to QEMU's isa-debug-exit port, which makes QEMU exit with status (0x31 << 1) | 1 = 99.
// Anything else (an abort, an error, no exit within the timeout) means TCG.

export type Accel = 'kvm' | 'tcg';

const PROBE_EXIT = 99;
const PROBE_TIMEOUT_MS = 10_000;

function probeFirmware(): Buffer {
  const bios = Buffer.alloc(64 * 1024, 0xf4); // hlt everywhere
  // At reset the CPU runs F000:FFF0 (real mode), the last 16 bytes of this image.
  Buffer.from([0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]).copy(bios, 0xfff0); // mov al,0x31; out 0xf4,al; hlt; jmp $-3
  return bios;
}

/** The CPU model per accelerator: the host's under KVM, everything TCG can emulate otherwise. */
export const CPU_MODEL: Record<Accel, string> = { kvm: 'host', tcg: 'max' };

const probes = new Map<string, Promise<{ ok: boolean; why: string }>>();

/** Whether `qemu` can run guests under KVM here; probed once per binary and process. */
export function kvmUsable(qemu: string): Promise<{ ok: boolean; why: string }> {
  let p = probes.get(qemu);
  if (!p) {
    p = probeKvm(qemu);
    probes.set(qemu, p);
  }
  return p;
}

async function probeKvm(qemu: string): Promise<{ ok: boolean; why: string }> {
  try {
    await access('/dev/kvm', fsc.R_OK | fsc.W_OK);
  } catch (err) {
    return { ok: false, why: `/dev/kvm is not usable (${(err as NodeJS.ErrnoException).code ?? String(err)})` };
  }
  const r = await runProbeGuest(qemu, 'kvm');
  return r.ok ? { ok: true, why: 'a probe guest ran under KVM' } : { ok: false, why: `/dev/kvm is present but ${r.why}` };
}

/** Runs the probe firmware under `accel`; ok when it reached the debug-exit port. */
export async function runProbeGuest(qemu: string, accel: Accel): Promise<{ ok: boolean; why: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'blixard-accel-probe-'));
  try {
    const bios = path.join(dir, 'probe.bin');
    await writeFile(bios, probeFirmware());
    const args = ['-accel', accel, '-machine', 'q35', '-cpu', CPU_MODEL[accel], '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none', '-bios', bios, '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04'];
    const r = await new Promise<{ code: number | null; signal: string | null; timedOut: boolean; stderr: string }>((resolve) => {
      execFile(qemu, args, { timeout: PROBE_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, _out, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, signal: err?.signal ?? null, timedOut: !!err?.killed, stderr: String(stderr) });
      });
    });
    if (r.code === PROBE_EXIT) return { ok: true, why: `a probe guest ran under ${accel}` };
    const what = r.timedOut ? `did not finish within ${PROBE_TIMEOUT_MS} ms` : r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`;
    const said = r.stderr.trim().split('\n').slice(-2).join(' ');
    return { ok: false, why: `a probe guest under ${accel} ${what}${said ? `: ${said}` : ''}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
