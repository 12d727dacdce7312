// The demo's web backend: answers every request with the pod's name.
'use strict'
const http = require('node:http')
const name = process.argv[2] || 'pod'
const port = Number(process.argv[3] || 8080)
http.createServer((req, res) => res.end(`hello from ${name}\n`)).listen(port)
