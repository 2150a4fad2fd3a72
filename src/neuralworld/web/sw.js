// Service worker: keeps the world playable offline once it has loaded, and gives the page
// several WebAssembly threads on hosts that cannot send the headers they need.
//
// On install it caches the page's own files (world.json "files"."page"); the page caches the
// model and runtime of the backend it runs once they have loaded (player.js). Requests go to the
// network first, so a re-export is picked up at once, and fall back to the cache when the server
// is gone. A response is stored again only when its Last-Modified changed, so the large runtime
// files are not rewritten on every load.
//
// Threads need cross-origin isolation (SharedArrayBuffer), which takes two response headers,
// Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp.
// `neuralworld play` sends them; a static host often cannot, so every response that passes
// through here gets them (as coi-serviceworker does), and the page reloads once when it finds
// itself controlled but not isolated (player.js). Every file is the page's own, so require-corp
// blocks nothing.

const CACHE = 'neuralworld-v2'; // player.js caches into the same

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const meta = await (await fetch('world.json', { cache: 'no-store' })).json();
    const cache = await caches.open(CACHE);
    await cache.addAll(meta.files.page.map((f) => new Request(f, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

function isolated(response) {
  if (!response || response.type === 'opaque' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

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
  event.respondWith(networkFirst(event.request).then(isolated));
});
