// `node --import ./test/helpers/log-modules.mjs ...` appends the URL of every module the process
// loads to the file named by $LOG_MODULES: ES modules and builtins through a load hook (which runs
// on its own thread in Node 20), CommonJS files through Module._load.
import { appendFileSync } from 'node:fs';
import Module, { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

const out = process.env.LOG_MODULES;

export async function load(url, context, next) {
  if (out) appendFileSync(out, `${url}\n`);
  return next(url, context);
}

if (isMainThread && out) {
  register(import.meta.url);
  const original = Module._load;
  Module._load = function (request, parent, isMain) {
    try {
      const file = Module._resolveFilename(request, parent, isMain);
      appendFileSync(out, `${file.startsWith('/') ? pathToFileURL(file).href : `node:${file.replace(/^node:/, '')}`}\n`);
    } catch {
      // not resolvable: the real load reports it
    }
    return original.apply(this, arguments);
  };
}
