import { findExecutable } from './files.js';

// The programs a driver needs on this machine (qemu-system-x86_64, perl, prlimit...): looked up
// once, and when one is missing, named with the Debian package that provides it. Which programs,
// and which packages, each driver says for itself.

/** The path of `cmd` (a name looked up on PATH, or a path); throws naming the package to install. */
export async function requireExecutable(cmd: string, debianPackage: string): Promise<string> {
  const p = await findExecutable(cmd);
  if (!p) throw new Error(`${cmd} not found on PATH (Debian package: ${debianPackage})`);
  return p;
}

/** A driver's programs, found on first use and remembered. */
export class HostTools<T> {
  private found: Promise<T> | null = null;

  constructor(private readonly find: () => Promise<T>) {}

  get(): Promise<T> {
    this.found ??= this.find();
    return this.found;
  }

  /** Driver.available(). A failed lookup is forgotten, so the next call sees a package installed since. */
  async available(): Promise<{ ok: boolean; why?: string }> {
    try {
      await this.get();
      return { ok: true };
    } catch (err) {
      this.found = null;
      return { ok: false, why: (err as Error).message };
    }
  }
}
