// The world's worker: runs world.js off the page's main thread and draws on the canvas the page
// handed over (an OffscreenCanvas), so that the page's own work never holds a frame back.
//
// The page sends {type: 'start', canvas, options, base} as soon as it runs (the worker reads
// world.json itself, so the runtime starts loading at once), then {type: 'input', reading}
// whenever its devices change and {type: 'call', id, name, args} for World's methods; the worker
// answers {type: 'ready'}, {type: 'status'} after every frame, {type: 'reply', id, result | error}
// and {type: 'error'} when the world stops.

import { World } from './world.js';

let world = null;

self.onmessage = async (e) => {
  const m = e.data;
  if (m.type === 'start') {
    try {
      const r = await fetch(new URL('world.json', m.base));
      if (!r.ok) throw new Error(`world.json: HTTP ${r.status}`);
      world = new World(await r.json(), m.canvas, m.options, m.base, (status) => postMessage({ type: 'status', status }));
      await world.load();
      postMessage({ type: 'ready', backend: world.backend, threads: world.threads, model: world.file });
    } catch (err) {
      postMessage({ type: 'failed', message: String(err.message || err) });
      return;
    }
    world.play((err) => postMessage({ type: 'error', message: String(err.message || err) }));
  } else if (m.type === 'input') {
    if (world) world.input(m.reading);
  } else if (m.type === 'call') {
    try {
      postMessage({ type: 'reply', id: m.id, result: await world[m.name](...m.args) });
    } catch (err) {
      postMessage({ type: 'reply', id: m.id, error: String(err.message || err) });
    }
  }
};
