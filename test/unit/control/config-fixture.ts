/**
 * A valid config shared by the config tests, as the object YAML would parse
 * to. Each call returns a fresh copy, so a test can break one field of it.
 */
export function validConfig(): Record<string, any> {
  return {
    node: { name: 'host-a', underlayIP: '192.168.250.1' },
    networks: [
      { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' },
      { name: 'red', vni: 43, subnet: '10.250.0.0/24' },
    ],
    peers: ['192.168.250.2', '192.168.250.3'],
    pods: [
      { name: 'web-1', network: 'blue', netns: 'pA', ip: '10.244.1.2/16' },
      { name: 'web-2', network: 'blue', netns: 'pB', ip: '10.244.1.3/16', mac: '02:00:0a:f4:01:03' },
      { name: 'db-1', network: 'red', netns: 'pC', ip: '10.250.0.2/24' },
    ],
  }
}

/** Every namespace exists: tests must not depend on the host's /var/run/netns. */
export const anyNetns = { netnsExists: () => true }
