// Build the JavaScript example into a component:
//   node build.mjs [OUT]   (default plugins/target/js/reject_list_js.wasm)
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const out = process.argv[2] ?? resolve(root, 'plugins/target/js/reject_list_js.wasm');

const { component } = await componentize({
  sourcePath: resolve(here, 'plugin.js'),
  witPath: resolve(root, 'wit/0.1'),
  worldName: 'mailgate-plugin',
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks', 'stdio'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} octets)`);
