import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Iroh } from '@number0/iroh';

// Hypervisors want files. Each image content a VM needs is exported once from the blob store to
// <data-dir>/images/<hash>, read-only, and shared by every VM that runs it (raw and qcow2 images
// get a per-VM overlay on top, so this file is never written).

export class ImageFiles {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly iroh: Iroh,
    private readonly dir: string,
  ) {}

  /** The local path of a blob's content, exporting it first if needed. */
  pathFor(hash: string): Promise<string> {
    let p = this.inflight.get(hash);
    if (!p) {
      p = this.export(hash).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  async remove(hash: string): Promise<void> {
    await rm(this.fileOf(hash), { force: true });
  }

  fileOf(hash: string): string {
    return path.join(this.dir, hash.replace(/^blake3:/, ''));
  }

  private async export(hash: string): Promise<string> {
    const file = this.fileOf(hash);
    try {
      await stat(file);
      return file;
    } catch {
      // not exported yet
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const { Hash, BlobExportFormat, BlobExportMode } = await import('@number0/iroh');
    const tmp = `${file}.${process.pid}.tmp`;
    await this.iroh.blobs.export(Hash.fromString(hash.replace(/^blake3:/, '')).toString(), tmp, BlobExportFormat.Blob, BlobExportMode.Copy);
    await chmod(tmp, 0o555); // executables must stay runnable; nothing may write it
    await rename(tmp, file);
    return file;
  }
}
