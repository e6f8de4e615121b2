import { jsonSchema } from '../manifest/index.js';

// `blixard schema`: the JSON Schema of every kind, for editors (yaml-language-server and others).

export default async function schema(): Promise<void> {
  process.stdout.write(JSON.stringify(await jsonSchema(), null, 2) + '\n');
}
