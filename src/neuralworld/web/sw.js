// Service worker: keeps the world playable offline once it has loaded.
//
// On install it caches every file listed in world.json ("files": the page, the runtime, the
// model, the start frames). Requests go to the network first, so a re-export is picked up at
// once, and fall back to the cache when the server is gone. A response is stored again only
// when its Last-Modified changed, so the large runtime files are not rewritten on every load.

const CACHE = 'neuralworld-v1';

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const meta = await (await fetch('world.json', { cache: 'no-store' })).json();
    const cache = await caches.open(CACHE);
    await cache.addAll(meta.files.map((f) => new Request(f, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && new URL(request.url).origin === self.location.origin) {
      const cached = await cache.match(request, { ignoreSearch: true });
      const stamp = (r) => r && (r.headers.get('Last-Modified') || '') + (r.headers.get('Content-Length') || '');
      if (!cached || stamp(cached) !== stamp(response) || !response.headers.get('Last-Modified')) {
        await cache.put(request, response.clone());
      }
    }
    return response;
  } catch (err) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener('fetch', (event) => {
  if (event.request.method !== 'GET' || !event.request.url.startsWith(self.location.origin)) return;
  event.respondWith(networkFirst(event.request));
});
