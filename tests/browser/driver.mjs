#!/usr/bin/env node
// Plays one stream in headless Chromium with flv.js, mpegts.js or hls.js and reports what the
// <video> element decoded.
//
//   node driver.mjs --player flvjs|mpegts|hlsjs --url URL [--live 0|1] [--serve DIR]
//                   [--timeout SECONDS] [--min-frames N] [--min-advance SECONDS]
//
// A tiny static HTTP server on a free loopback port serves the player pages and the players'
// dist files from node_modules (and DIR under /files/ when --serve is given, for the harness
// self-test). A URL starting with "/" is taken relative to that server.
//
// Success: totalVideoFrames > N and currentTime advanced by >= the given seconds since the first
// decoded frame, with no player error. Prints one line `BROWSER-RESULT {json}` on stdout either
// way and exits 0 on success, 1 on a playback failure, 2 on a usage or launch error.
// Everything is bounded: the playback wait, the browser launch, and a hard deadline that exits
// the process (Playwright then kills the Chromium it started).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.join(HERE, 'node_modules');

const PLAYERS = {
  flvjs: 'flvjs.html',
  mpegts: 'mpegts.html',
  hlsjs: 'hlsjs.html',
};

// URL path -> file: only these and files under --serve are reachable.
const LIBS = {
  '/lib/flv.min.js': path.join(MODULES, 'flv.js/dist/flv.min.js'),
  '/lib/mpegts.js': path.join(MODULES, 'mpegts.js/dist/mpegts.js'),
  '/lib/hls.min.js': path.join(MODULES, 'hls.js/dist/hls.min.js'),
};

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'application/javascript',
  '.flv': 'video/x-flv',
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.map': 'application/json',
};

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

function usage(msg) {
  process.stderr.write(`driver: ${msg}\n`);
  process.stderr.write(
    'usage: node driver.mjs --player flvjs|mpegts|hlsjs --url URL [--live 0|1] [--serve DIR]\n' +
      '                       [--timeout S] [--min-frames N] [--min-advance S]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    player: null,
    url: null,
    live: true,
    serve: null,
    timeout: 20,
    minFrames: 25,
    minAdvance: 1,
    executable: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) usage(`missing value for ${k}`);
    switch (k) {
      case '--player':
        opts.player = v;
        break;
      case '--url':
        opts.url = v;
        break;
      case '--live':
        opts.live = v !== '0';
        break;
      case '--serve':
        opts.serve = path.resolve(v);
        break;
      case '--timeout':
        opts.timeout = Number(v);
        break;
      case '--min-frames':
        opts.minFrames = Number(v);
        break;
      case '--min-advance':
        opts.minAdvance = Number(v);
        break;
      case '--chromium':
        opts.executable = v;
        break;
      default:
        usage(`unknown option ${k}`);
    }
  }
  if (!PLAYERS[opts.player]) usage(`--player must be one of ${Object.keys(PLAYERS).join(', ')}`);
  if (!opts.url) usage('--url is required');
  for (const k of ['timeout', 'minFrames', 'minAdvance']) {
    if (!Number.isFinite(opts[k]) || opts[k] < 0) usage(`bad --${k}`);
  }
  if (opts.timeout > 120) usage('--timeout is capped at 120 s');
  return opts;
}

// Resolves a request path to a file this server may serve, or null.
function resolveFile(urlPath, serveDir) {
  if (LIBS[urlPath]) return LIBS[urlPath];
  const under = (prefix, root) => {
    if (!urlPath.startsWith(prefix)) return null;
    const rel = decodeURIComponent(urlPath.slice(prefix.length));
    const full = path.resolve(root, rel);
    return full.startsWith(root + path.sep) ? full : null;
  };
  return under('/pages/', path.join(HERE, 'pages')) || (serveDir && under('/files/', serveDir));
}

function startStatic(serveDir) {
  const server = http.createServer((req, res) => {
    const urlPath = new URL(req.url, 'http://127.0.0.1').pathname;
    const file = resolveFile(urlPath, serveDir);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (!file) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    fs.readFile(file, (err, body) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
        return;
      }
      const type = TYPES[path.extname(file)] || 'application/octet-stream';
      res.writeHead(200, {
        'Content-Type': type,
        'Content-Length': body.length,
        'Cache-Control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  // Bounded: a client that stalls cannot keep the server (and so the driver) alive.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function isLoopback(u) {
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return host === '127.0.0.1' || host === '::1' || host === 'localhost';
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const result = {
    player: opts.player,
    url: opts.url,
    ok: false,
    frames: 0,
    dropped: 0,
    currentTime: 0,
    advanced: 0,
    errors: [],
    warnings: [],
    elapsed_ms: 0,
  };
  let staticServer = null;
  let browser = null;
  let exitCode = 1;

  // Last resort: whatever hangs (a launch, a close), the process ends and Playwright's exit hook
  // kills the browser it launched.
  const hardDeadline = setTimeout(() => {
    result.errors.push('driver: hard deadline reached');
    finish(result, started, 1);
  }, (opts.timeout + 30) * 1000);
  hardDeadline.unref();

  try {
    staticServer = await startStatic(opts.serve);
    const origin = `http://127.0.0.1:${staticServer.address().port}`;
    const streamUrl = new URL(opts.url, origin);
    if (!isLoopback(streamUrl)) usage(`only loopback URLs are played, not ${streamUrl.host}`);

    browser = await chromium.launch({
      executablePath: opts.executable,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    // A new context is a new, empty profile.
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => result.errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && result.warnings.length < 50) {
        result.warnings.push(`console: ${m.text()}`);
      }
    });
    // Nothing leaves the machine: any request to a non-loopback host is refused.
    await context.route(
      (u) => !isLoopback(u),
      (route) => {
        result.errors.push(`blocked non-loopback request ${route.request().url()}`);
        return route.abort();
      },
    );

    const pageUrl =
      `${origin}/pages/${PLAYERS[opts.player]}` +
      `?url=${encodeURIComponent(streamUrl.href)}&live=${opts.live ? 1 : 0}`;
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 10_000 });

    const deadline = Date.now() + opts.timeout * 1000;
    let firstTime = null;
    for (;;) {
      const s = await page.evaluate(() => {
        const v = document.getElementById('videoElement');
        const q = v.getVideoPlaybackQuality();
        return {
          frames: q.totalVideoFrames,
          dropped: q.droppedVideoFrames,
          currentTime: v.currentTime,
          errors: window.playerErrors.slice(),
          warnings: window.playerWarnings.slice(),
        };
      });
      result.frames = s.frames;
      result.dropped = s.dropped;
      result.currentTime = s.currentTime;
      result.errors.push(...s.errors.filter((e) => !result.errors.includes(e)));
      result.warnings.push(...s.warnings.filter((w) => !result.warnings.includes(w)));
      // Measured from the first decoded frame: a live player may start anywhere on the timeline.
      if (firstTime === null && s.frames > 0) firstTime = s.currentTime;
      result.advanced = firstTime === null ? 0 : s.currentTime - firstTime;
      if (result.errors.length > 0) break;
      if (result.frames > opts.minFrames && result.advanced >= opts.minAdvance) {
        result.ok = true;
        break;
      }
      if (Date.now() >= deadline) {
        result.errors.push(
          `timeout after ${opts.timeout} s: frames ${result.frames} (need > ${opts.minFrames}), ` +
            `currentTime advanced ${result.advanced.toFixed(3)} s (need >= ${opts.minAdvance})`,
        );
        break;
      }
      await sleep(200);
    }
    exitCode = result.ok ? 0 : 1;
  } catch (e) {
    result.errors.push(`driver: ${e && e.message ? e.message : String(e)}`);
    exitCode = browser ? 1 : 2;
  } finally {
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10_000)]);
    if (staticServer) {
      staticServer.closeAllConnections();
      staticServer.close();
    }
  }
  finish(result, started, exitCode);
}

function finish(result, started, code) {
  result.elapsed_ms = Date.now() - started;
  process.stdout.write(`BROWSER-RESULT ${JSON.stringify(result)}\n`, () => process.exit(code));
}

main();
