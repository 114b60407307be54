// The Unleash Proxy (@unleash/proxy) for bench/http.py, fully offline.
//
//   node server.js FEATURES.json PORT
//
// The features (client API format, written by bench/http.py from bench/servers/flagsets.py)
// are the SDK's bootstrap; the upstream Unleash URL is a closed loopback port (discard, 9),
// with fetching and metrics pushed an hour out, so nothing but the bootstrap is ever served.
// Storage is in memory. /proxy/all is enabled: the evaluate-all endpoint.
'use strict';

const fs = require('node:fs');
const { createApp } = require('@unleash/proxy');
const { InMemStorageProvider } = require('unleash-client');

const [featuresPath, port] = process.argv.slice(2);
const features = JSON.parse(fs.readFileSync(featuresPath, 'utf8'));

const app = createApp({
    unleashUrl: 'http://127.0.0.1:9/api/',
    unleashApiToken: 'offline-bench',
    clientKeys: ['bench-key'],
    refreshInterval: 3_600_000,
    metricsInterval: 3_600_000,
    enableAllEndpoint: true,
    logLevel: 'fatal',
    storageProvider: new InMemStorageProvider(),
    expBootstrap: { data: features.features, segments: [] },
});

app.listen(Number(port), '127.0.0.1', () => {
    console.log(`unleash-proxy ready on 127.0.0.1:${port}: ${features.features.length} flags`);
});
