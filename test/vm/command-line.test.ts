import { describe, expect, it } from 'vitest';
import { kernelCommandLine, processEnv, qemuArgs } from '../../src/vm/index.js';
import { spec } from './support.js';

// What the drivers launch, checked without launching: QEMU's command line, the process
// driver's environment, and the /proc parsing every liveness check rests on.

const argAfter = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));

describe('qemu command line', () => {
  const kernelVm = spec('web-1', {
    vcpus: 2,
    memoryMiB: 512,
    kernelArgs: 'console=ttyS0 quiet',
    ports: [
      { host: 8080, guest: 80, protocol: 'tcp' },
      { host: 5353, guest: 53, protocol: 'udp' },
    ],
    image: { format: 'kernel', path: '/store/vmlinuz', initrdPath: '/store/initrd.img' },
  });

  it('sizes the machine from the spec and picks the CPU model per accelerator', () => {
    const tcg = qemuArgs(kernelVm, 'tcg');
    expect(argAfter(tcg, '-accel')).toEqual(['tcg']);
    expect(argAfter(tcg, '-cpu')).toEqual(['max']);
    expect(argAfter(tcg, '-smp')).toEqual(['2']);
    expect(argAfter(tcg, '-m')).toEqual(['512M']);
    expect(argAfter(qemuArgs(kernelVm, 'kvm'), '-cpu')).toEqual(['host']);
  });

  it('puts the serial console in a file and QMP on a unix socket, with no monitor on stdio', () => {
    const a = qemuArgs(kernelVm, 'tcg');
    expect(argAfter(a, '-chardev')).toEqual(['file,id=console,path=console.log']);
    expect(argAfter(a, '-serial')).toEqual(['chardev:console']);
    expect(argAfter(a, '-qmp')).toEqual(['unix:qmp.sock,server=on,wait=off']);
    expect(a).toContain('-nodefaults');
    expect(argAfter(a, '-display')).toEqual(['none']);
    expect(a).not.toContain('-monitor');
    expect(a).not.toContain('-nographic');
  });

  it('boots a kernel image with its initrd and command line', () => {
    const a = qemuArgs(kernelVm, 'tcg');
    expect(argAfter(a, '-kernel')).toEqual(['/store/vmlinuz']);
    expect(argAfter(a, '-initrd')).toEqual(['/store/initrd.img']);
    expect(argAfter(a, '-append')).toEqual(['console=ttyS0 quiet']);
    expect(a).not.toContain('-drive');
  });

  it('forwards ports on 127.0.0.1 only, tcp and udp, to a virtio NIC', () => {
    const a = qemuArgs(kernelVm, 'tcg');
    expect(argAfter(a, '-netdev')).toEqual(['user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53']);
    expect(argAfter(a, '-device')).toEqual(['virtio-net-pci,netdev=net0']);
    expect(qemuArgs({ ...kernelVm, ports: [] }, 'tcg')).toContain('user,id=net0');
  });

  it('runs raw and qcow2 images only through the per-VM overlay: the stored image is not on the command line', () => {
    for (const format of ['raw', 'qcow2'] as const) {
      const a = qemuArgs(spec('disk', { image: { format, path: '/store/blobs/abc' } }), 'tcg');
      expect(argAfter(a, '-drive')).toEqual(['file=overlay.qcow2,format=qcow2,if=virtio']);
      expect(a.join(' ')).not.toContain('/store/blobs/abc');
      expect(a).not.toContain('-kernel');
    }
  });

  it('gives the kernel a serial console unless the command line names one', () => {
    expect(kernelCommandLine(undefined)).toBe('console=ttyS0');
    expect(kernelCommandLine('quiet')).toBe('quiet console=ttyS0');
    expect(kernelCommandLine('console=ttyS1 quiet')).toBe('console=ttyS1 quiet');
    expect(kernelCommandLine('earlyprintk=serial console=hvc0')).toBe('earlyprintk=serial console=hvc0');
  });
});

describe('process driver environment', () => {
  it('maps ports to PORT_<guest>=<host>, names the VM, and carries nothing of the daemon', () => {
    process.env.BLIXARD_TOKEN = 'secret-token-of-the-daemon';
    try {
      const env = processEnv(
        spec('app', {
          generation: 4,
          kernelArgs: 'verbose',
          ports: [
            { host: 9053, guest: 53, protocol: 'udp' },
            { host: 8080, guest: 80, protocol: 'tcp' },
            { host: 9054, guest: 53, protocol: 'tcp' },
          ],
          image: { format: 'executable', path: '/x' },
        }),
        '/data/vms/process/app',
      );
      expect(env).toEqual({
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: '/data/vms/process/app',
        BLIXARD_VM_NAME: 'app',
        BLIXARD_VM_UID: 'uid-app',
        BLIXARD_VM_GENERATION: '4',
        BLIXARD_KERNEL_ARGS: 'verbose',
        PORT_80: '8080',
        PORT_53: '9054',
        PORT_53_UDP: '9053',
      });
    } finally {
      delete process.env.BLIXARD_TOKEN;
    }
  });
});
