// Build the JavaScript example into a component:
//   node build.mjs [OUT]   (default plugins/target/js/reject_list_js.wasm)
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const out = process.argv[2] ?? resolve(root, 'plugins/target/js/reject_list_js.wasm');

// The example's world, with the contract (wit/0.2) as its dependency.
const wit = resolve(root, 'plugins/target/js/wit');
await rm(wit, { recursive: true, force: true });
await mkdir(resolve(wit, 'deps/mailgate-plugin'), { recursive: true });
await copyFile(resolve(here, 'world.wit'), resolve(wit, 'world.wit'));
await copyFile(
  resolve(root, 'wit/0.2/mailgate-plugin.wit'),
  resolve(wit, 'deps/mailgate-plugin/mailgate-plugin.wit'),
);

const { component } = await componentize({
  sourcePath: resolve(here, 'plugin.js'),
  witPath: wit,
  worldName: 'reject-list',
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks', 'stdio'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} octets)`);
