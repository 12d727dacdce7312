import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ManifestError, readManifests, servicesFromManifests } from '../../../src/service/k8s-manifests'
import { ServiceSpec, validateService } from '../../../src/service/service-model'
import { ServiceTable } from '../../../src/service/service-table'

// As `kubectl get svc web -n shop -o yaml` prints it (server-set fields kept).
const WEB_SERVICE = `
apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{"tapestry.io/algorithm":"roundRobin"},"labels":{"app":"web"},"name":"web","namespace":"shop"},"spec":{"ports":[{"name":"http","port":80,"targetPort":"http"},{"name":"metrics","port":9090}],"selector":{"app":"web"},"sessionAffinity":"ClientIP"}}
    tapestry.io/algorithm: roundRobin
  creationTimestamp: "2024-05-02T10:11:12Z"
  labels:
    app: web
  name: web
  namespace: shop
  resourceVersion: "123456"
  uid: 6a1c2f0e-3b7d-4c59-9d1e-0f8a7b6c5d4e
spec:
  clusterIP: 10.96.120.15
  clusterIPs:
  - 10.96.120.15
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: http
  - name: metrics
    port: 9090
    protocol: TCP
    targetPort: 9090
  selector:
    app: web
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 600
  type: ClusterIP
status:
  loadBalancer: {}
`

/** An EndpointSlice of web as the endpointslice controller writes it. */
function webSlice(name: string, eps: { ip: string; ready?: boolean | null; serving?: boolean; terminating?: boolean; node?: string }[], httpPort = 8080): string {
  const endpoints = eps.length === 0 ? 'endpoints: null\n' : 'endpoints:\n' + eps.map((e) => {
    const cond = [
      e.ready === undefined ? '' : `    ready: ${e.ready === null ? 'null' : e.ready}\n`,
      e.serving === undefined ? '' : `    serving: ${e.serving}\n`,
      e.terminating === undefined ? '' : `    terminating: ${e.terminating}\n`,
    ].join('')
    return `- addresses:
  - ${e.ip}
  conditions:
${cond || '    {}\n'}  nodeName: ${e.node ?? 'node-a'}
  targetRef:
    kind: Pod
    name: web-7d4b9c9f6-${e.ip.split('.').join('')}
    namespace: shop
    uid: 0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
  zone: zone-a
`
  }).join('')
  return `
addressType: IPv4
apiVersion: discovery.k8s.io/v1
${endpoints}kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2024-05-02T10:11:20Z"
  creationTimestamp: "2024-05-02T10:11:12Z"
  generateName: web-
  generation: 3
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: web
  name: ${name}
  namespace: shop
  ownerReferences:
  - apiVersion: v1
    blockOwnerDeletion: true
    controller: true
    kind: Service
    name: web
    uid: 6a1c2f0e-3b7d-4c59-9d1e-0f8a7b6c5d4e
  resourceVersion: "123999"
  uid: 9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a
ports:
- name: http
  port: ${httpPort}
  protocol: TCP
- name: metrics
  port: 9090
  protocol: TCP
`
}

/** Indents a document to sit under `items:` of a List. */
function item(doc: string): string {
  const lines = doc.trim().split('\n')
  return lines.map((l, i) => (i === 0 ? `- ${l}` : `  ${l}`)).join('\n') + '\n'
}

function issuesOf(text: string): string[] {
  try {
    servicesFromManifests(text)
  } catch (err) {
    assert.ok(err instanceof ManifestError, String(err))
    assert.equal(err.code, 'TAPESTRY_MANIFEST_INVALID')
    assert.equal(err.message, err.issues.join('; '))
    return err.issues
  }
  assert.fail('expected a ManifestError')
}

test('a Service and its EndpointSlice, as kubectl prints them', () => {
  const text = WEB_SERVICE + '---' + webSlice('web-x7k2p', [
    { ip: '10.244.1.5', ready: true, serving: true, terminating: false },
    { ip: '10.244.2.9', ready: true, serving: true, terminating: false, node: 'node-b' },
  ])
  const specs = servicesFromManifests(text)
  const want: ServiceSpec = {
    name: 'web', namespace: 'shop', clusterIP: '10.96.120.15',
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
      { name: 'metrics', port: 9090, protocol: 'TCP', targetPort: 9090 },
    ],
    algorithm: 'roundRobin',
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
    endpoints: [
      { ip: '10.244.1.5', ready: true, terminating: false },
      { ip: '10.244.2.9', ready: true, terminating: false },
    ],
  }
  assert.deepEqual(specs, [want])
  const v = validateService(specs[0])
  assert.equal(v.affinityTimeoutMs, 600_000)
  assert.equal(v.algorithmName, 'roundRobin')
  const table = new ServiceTable({ maglevSize: 251, seed: 1 })
  assert.equal(table.upsert(specs[0]).endpointsAdded, 2)
  assert.deepEqual(table.get('web', 'shop')?.ports.map((p) => `${p.port}->${p.targetPort}`), ['80->8080', '9090->9090'])
})

test('a List (kubectl get svc,endpointslices -o yaml): several slices for one service, other kinds skipped', () => {
  const other = `
apiVersion: v1
kind: Service
metadata:
  name: cache
  namespace: shop
spec:
  clusterIP: 10.96.3.3
  ports:
  - port: 6379
    targetPort: 6379
`
  const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
`
  const text = `apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
${item(WEB_SERVICE)}${item(webSlice('web-aaaaa', [{ ip: '10.244.1.5', ready: true }, { ip: '10.244.1.6', ready: true }]))}${item(deployment)}${item(other)}${item(webSlice('web-bbbbb', [{ ip: '10.244.3.7', ready: true }, { ip: '10.244.1.6', ready: false }]))}`
  const r = readManifests(text)
  assert.deepEqual(r.services.map((s) => `${s.namespace}/${s.name}`), ['shop/web', 'shop/cache'])
  // Concatenated in document order; 10.244.1.6 listed twice keeps its first listing (validateService).
  assert.deepEqual(r.services[0].endpoints.map((e) => e.ip), ['10.244.1.5', '10.244.1.6', '10.244.3.7', '10.244.1.6'])
  assert.deepEqual(validateService(r.services[0]).endpoints.map((e) => [e.text, e.ready]),
    [['10.244.1.5', true], ['10.244.1.6', true], ['10.244.3.7', true]])
  assert.deepEqual(r.services[1], {
    name: 'cache', namespace: 'shop', clusterIP: '10.96.3.3', ports: [{ port: 6379, targetPort: 6379 }], endpoints: [],
  })
  assert.deepEqual(r.skipped, [{ where: 'document 1 items[2]', kind: 'Deployment', name: 'web', reason: 'kind Deployment holds no service' }])
})

test('terminating and not-ready endpoints; ready unset or null means ready', () => {
  const text = WEB_SERVICE + '---' + webSlice('web-x7k2p', [
    { ip: '10.244.1.5', ready: false, serving: true, terminating: true },
    { ip: '10.244.1.6', ready: false, serving: false, terminating: false },
    { ip: '10.244.1.7' },
    { ip: '10.244.1.8', ready: null },
    { ip: '10.244.1.9', ready: true, terminating: true },
  ])
  assert.deepEqual(servicesFromManifests(text)[0].endpoints, [
    { ip: '10.244.1.5', ready: false, terminating: true },
    { ip: '10.244.1.6', ready: false, terminating: false },
    { ip: '10.244.1.7', ready: true, terminating: false },
    { ip: '10.244.1.8', ready: true, terminating: false },
    { ip: '10.244.1.9', ready: true, terminating: true },
  ])
})

test('an empty slice (endpoints: null) and several addresses per endpoint', () => {
  const slice2 = webSlice('web-b', [{ ip: '10.244.1.5', ready: true }]).replace('  - 10.244.1.5\n', '  - 10.244.1.5\n  - 10.244.1.50\n')
  const specs = servicesFromManifests(WEB_SERVICE + '---' + webSlice('web-a', []) + '---' + slice2)
  assert.deepEqual(specs[0].endpoints.map((e) => e.ip), ['10.244.1.5', '10.244.1.50'])
})

test('a missing namespace is "default", for the Service and for matching its slices', () => {
  const text = `
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  ports:
  - name: grpc
    port: 9000
    targetPort: 9001
    nodePort: 30900
  - name: web
    port: 80
    nodePort: 30080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  labels:
    kubernetes.io/service-name: api
addressType: IPv4
endpoints:
- addresses: ["10.244.5.5"]
ports:
- name: grpc
  port: 9001
`
  assert.deepEqual(servicesFromManifests(text), [{
    name: 'api', namespace: 'default', clusterIP: '10.96.0.50',
    ports: [{ name: 'grpc', port: 9000, targetPort: 9001 }, { name: 'web', port: 80 }],
    nodePort: 30900,
    endpoints: [{ ip: '10.244.5.5', ready: true, terminating: false }],
  }])
})

test('headless, dual-stack and ExternalName services; IPv6 and FQDN slices are skipped', () => {
  const text = `
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: None, ports: [{ port: 5432 }] }
---
apiVersion: v1
kind: Service
metadata: { name: dual, namespace: shop }
spec:
  clusterIP: fd00:10:96::7
  clusterIPs: [fd00:10:96::7, 10.96.0.7]
  ipFamilies: [IPv6, IPv4]
  ports: [{ port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: dual-v6, namespace: shop, labels: { kubernetes.io/service-name: dual } }
addressType: IPv6
endpoints: [{ addresses: ["fd00:10:244::5"] }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: dual-v4, namespace: shop, labels: { kubernetes.io/service-name: dual } }
addressType: IPv4
endpoints: [{ addresses: ["10.244.9.9"] }]
---
apiVersion: v1
kind: Service
metadata: { name: ext, namespace: shop }
spec: { type: ExternalName, externalName: db.example.com }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ext-1, namespace: shop, labels: { kubernetes.io/service-name: ext } }
addressType: IPv4
endpoints: []
`
  const r = readManifests(text)
  assert.deepEqual(r.services.map((s) => [s.name, s.clusterIP, s.endpoints.map((e) => e.ip)]), [
    ['db', 'None', []],
    ['dual', '10.96.0.7', ['10.244.9.9']],
  ])
  assert.deepEqual(r.skipped.map((s) => [s.where, s.kind, s.name]), [
    ['document 3', 'EndpointSlice', 'dual-v6'],
    ['document 5', 'Service', 'ext'],
  ])
})

test('errors name the document, the object and the key path', () => {
  const text = `
apiVersion: v1
kind: Service
metadata:
  name: ok
spec:
  clusterIP: 10.96.0.1
  ports: [{ port: 80 }]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.2
  ports:
  - name: http
    port: 80
    targetPort: http
`
  assert.deepEqual(issuesOf(text), [
    'document 2 (Service web): spec.ports[0].targetPort: "http" is a named port; Tapestry resolves it only from the ports of the service\'s EndpointSlices, and none lists port "http"/TCP',
  ])
})

test('named targetPort: slices that disagree are an error; a matching protocol is required', () => {
  const text = WEB_SERVICE + '---' + webSlice('web-a', [{ ip: '10.244.1.5' }], 8080) + '---' + webSlice('web-b', [{ ip: '10.244.1.6' }], 8081)
  assert.deepEqual(issuesOf(text), [
    'document 1 (Service shop/web): spec.ports[0].targetPort: "http" resolves to different numbers in the EndpointSlices ' +
    '(8080 in document 2 (EndpointSlice shop/web-a); 8081 in document 3 (EndpointSlice shop/web-b)); Tapestry needs one target port per service port',
  ])
  const udp = WEB_SERVICE + '---' + webSlice('web-a', [{ ip: '10.244.1.5' }]).replace('port: 8080\n  protocol: TCP', 'port: 8080\n  protocol: UDP')
  assert.match(issuesOf(udp)[0], /none lists port "http"\/TCP$/)
})

test('every problem of every document is reported, with manifest paths for validateService issues', () => {
  const text = `
apiVersion: v1
kind: Service
metadata:
  name: a
  annotations: { tapestry.io/algorithm: fastest }
spec:
  clusterIP: 10.96.0.300
  sessionAffinity: Sticky
  ports:
  - port: 0
  - port: 80
    protocol: SCTP
  - port: 81
    nodePort: 99999
---
apiVersion: v1
kind: Service
metadata: { name: b }
spec:
  ports: [{ port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: c-1, labels: { kubernetes.io/service-name: c } }
addressType: IPv4
endpoints: [{ addresses: ["10.244.1.1"] }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: nolabel }
addressType: IPv4
endpoints:
- addresses: ["10.244.1.300"]
  conditions: { ready: "yes" }
---
apiVersion: v1
kind: Service
metadata: { name: a }
spec: { clusterIP: 10.96.0.9, ports: [{ port: 80 }] }
---
apiVersion: v2
kind: Service
metadata: { name: z }
---
kind: ConfigMap
apiVersion: v1
metadata: { name: settings }
---
hello: world
`
  assert.deepEqual(issuesOf(text), [
    'document 1 (Service a): spec.clusterIP: must be an IPv4 address, "None" or "" (got "10.96.0.300")',
    'document 1 (Service a): spec.ports[0].port: must be an integer in [1, 65535] (got 0)',
    // validateService: targetPort defaults to port, as in Kubernetes.
    'document 1 (Service a): spec.ports[0].targetPort: must be an integer in [1, 65535] (got 0)',
    'document 1 (Service a): spec.ports[1].protocol: must be "TCP" or "UDP" (got "SCTP")',
    'document 1 (Service a): metadata.annotations["tapestry.io/algorithm"]: must be one of maglev, random, roundRobin, leastConnections (got "fastest")',
    'document 1 (Service a): spec.sessionAffinity: must be "None" or "ClientIP" (got "Sticky")',
    'document 1 (Service a): spec.ports[2].nodePort: must be an integer in [1, 65535] (got 99999)',
    'document 2 (Service b): spec.clusterIP: missing: Tapestry does not allocate ClusterIPs; give one, or "None" for a headless service',
    'document 3 (EndpointSlice c-1): metadata.labels["kubernetes.io/service-name"]: no Service default/c among the documents',
    'document 4 (EndpointSlice nolabel): metadata.labels["kubernetes.io/service-name"]: missing: cannot tell which Service this EndpointSlice belongs to (got undefined)',
    'document 4 (EndpointSlice nolabel): endpoints[0].conditions.ready: must be a boolean (got "yes")',
    'document 4 (EndpointSlice nolabel): endpoints[0].addresses[0]: "10.244.1.300" is not an IPv4 address',
    'document 5 (Service a): service default/a is also defined in document 1 (Service a)',
    'document 6 (Service z): apiVersion: expected "v1" (got "v2")',
    'document 8: neither a Kubernetes object (no kind) nor a Tapestry service (no clusterIP) or services list',
  ])
})

test('YAML syntax errors name their document', () => {
  const issues = issuesOf(`services: []\n---\nmetadata: {name: [\n---\na: 1\na: 2\n`)
  assert.equal(issues.length >= 2, true, issues.join('\n'))
  assert.match(issues[0], /^document 2: YAML: /)
  assert.ok(issues.some((i) => /^document 3: YAML: Map keys must be unique at line 6, column 1$/.test(i)), issues.join('\n'))
})

test("Tapestry's own shapes: a services list, a top-level list, one object", () => {
  const one = { name: 'web', clusterIP: '10.96.0.20', ports: [{ port: 80, targetPort: 8080 }], endpoints: [{ ip: '10.244.1.5' }] }
  const want = [{ ...one, namespace: 'default' }]
  assert.deepEqual(servicesFromManifests(`
services:
- name: web
  clusterIP: 10.96.0.20
  ports: [{ port: 80, targetPort: 8080 }]
  endpoints: [{ ip: 10.244.1.5 }]
`), want)
  assert.deepEqual(servicesFromManifests(JSON.stringify([one])), want)
  assert.deepEqual(servicesFromManifests(JSON.stringify(one)), want)
  // Mixed with Kubernetes documents in one file.
  const mixed = servicesFromManifests(JSON.stringify(one) + '\n---\n' + WEB_SERVICE + '---' + webSlice('web-1', [{ ip: '10.244.1.6' }]))
  assert.deepEqual(mixed.map((s) => `${s.namespace}/${s.name}`), ['default/web', 'shop/web'])
})

test("errors in Tapestry's shape carry the list index and the spec path", () => {
  assert.deepEqual(issuesOf(`
services:
- name: ok
  clusterIP: 10.96.0.20
  ports: [{ port: 80 }]
  endpoints: []
- name: web
  clusterIP: 10.96.0.21
  ports: [{ port: 80, targetPort: http }]
  endpoints: [{ ip: nope }]
`), [
    'document 1 services[1] (web): ports[0].targetPort: must be a number: named ports are not supported (got "http")',
    'document 1 services[1] (web): endpoints[0].ip: must be an IPv4 address (got "nope")',
  ])
  assert.deepEqual(issuesOf('services: 3'), ['document 1: services: must be a list (got 3)'])
})

test('empty input and empty documents give no services', () => {
  assert.deepEqual(servicesFromManifests(''), [])
  assert.deepEqual(servicesFromManifests('---\n---\n# nothing\n'), [])
})

test('alias bombs are refused, not expanded', () => {
  const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
  for (let i = 1; i < 10; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill('*' + String.fromCharCode(96 + i)).join(',')}]`)
  const issues = issuesOf(lines.join('\n'))
  assert.match(issues[0], /^document 1: YAML: /)
})
