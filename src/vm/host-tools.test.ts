import { describe, expect, it } from 'vitest';
import { HostTools, requireExecutable } from './host-tools.js';
import { ProcessDriver } from './process.js';
import { QemuDriver } from './qemu.js';

describe('host tools', () => {
  it('finds a program on PATH, and names the Debian package of one that is missing', async () => {
    expect(await requireExecutable('sh', 'dash')).toMatch(/\/sh$/);
    await expect(requireExecutable('/nonexistent/blixard-tool', 'blixard-pkg')).rejects.toThrow('/nonexistent/blixard-tool not found on PATH (Debian package: blixard-pkg)');
  });

  it('looks the programs up once; available() forgets a failed lookup, so it sees a later install', async () => {
    let lookups = 0;
    let installed = false;
    const tools = new HostTools(async () => {
      lookups++;
      if (!installed) throw new Error('tool not found on PATH (Debian package: pkg)');
      return { tool: '/usr/bin/tool' };
    });
    expect(await tools.available()).toEqual({ ok: false, why: 'tool not found on PATH (Debian package: pkg)' });
    installed = true;
    expect(await tools.available()).toEqual({ ok: true });
    expect(await tools.get()).toEqual({ tool: '/usr/bin/tool' });
    expect(lookups).toBe(2);
  });

  it('each driver names its own programs and packages', async () => {
    const root = '/nonexistent/vms';
    expect(await new QemuDriver({ root, qemu: '/nonexistent/qemu' }).available()).toEqual({ ok: false, why: '/nonexistent/qemu not found on PATH (Debian package: qemu-system-x86)' });
    expect(await new ProcessDriver({ root, perl: '/nonexistent/perl' }).available()).toEqual({ ok: false, why: '/nonexistent/perl not found on PATH (Debian package: perl-base)' });
    expect(await new ProcessDriver({ root, prlimit: '/nonexistent/prlimit' }).available()).toEqual({ ok: false, why: '/nonexistent/prlimit not found on PATH (Debian package: util-linux)' });
  });
});
