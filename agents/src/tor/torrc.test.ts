// The node's torrc from the plan: loopback-only ports, no SOCKS, no TCP control port, the plan's
// authorities, and refusals of anything that is not what it claims to be.
import { renderTorrc, TorConfigError } from './torrc.js';
import { parseControlReplies } from './tor-control.js';

const paths = { dataDir: '/var/lib/secai-tor/data', controlSocket: '/var/lib/secai-tor/control/socket', cookieFile: '/var/lib/secai-tor/control/cookie' };
const authority = 'auth0 orport=7000 no-v2 v3ident=74113CCE0CB433D1A6C5D07FC2E9A467522F6C69 10.250.0.1:7100 32F6C31C8EB501DD8590A5EA51EE60AC14864C11';

it('renders a client-only torrc with loopback ports and the plan\'s network', () => {
  const torrc = renderTorrc({ transPort: 9040, dnsPort: 9053, network: { dirAuthorities: [authority], relays: ['10.250.0.1/32'], testingNetwork: true } }, paths, { user: 'debian-tor', owningPid: 42 }).split('\n');
  expect(torrc).toEqual(
    expect.arrayContaining([
      'TestingTorNetwork 1',
      'ClientOnly 1',
      'SocksPort 0',
      'ControlPort 0',
      'TransPort 127.0.0.1:9040',
      'DNSPort 127.0.0.1:9053',
      `ControlSocket ${paths.controlSocket}`,
      'CookieAuthentication 1',
      'User debian-tor',
      '__OwningControllerProcess 42',
      `DirAuthority ${authority}`,
    ]),
  );
  expect(torrc.filter((l) => /Port /.test(l) && !l.startsWith('#')).every((l) => / 0$/.test(l) || /127\.0\.0\.1:/.test(l))).toBe(true);
});

it('leaves the public network and TestingTorNetwork alone when the plan names no network', () => {
  const torrc = renderTorrc({ transPort: 9040, dnsPort: 0 }, paths);
  expect(torrc).not.toMatch(/TestingTorNetwork|DirAuthority|DNSPort|User /);
});

it.each([
  ['a DirAuthority that is not one', { transPort: 9040, dnsPort: 0, network: { dirAuthorities: ['a0 orport=1 v3ident=x 1.2.3.4:5 y\nExitRelay 1'], relays: [], testingNetwork: false } }, paths],
  ['a port out of range', { transPort: 70000, dnsPort: 0 }, paths],
  ['a path with a newline', { transPort: 9040, dnsPort: 0 }, { ...paths, dataDir: '/tmp/x\nSocksPort 9050' }],
])('refuses %s', (_what, plan, p) => {
  expect(() => renderTorrc(plan, p)).toThrow(TorConfigError);
});

it('reads the control replies of a bootstrapped client and of one without a consensus', () => {
  const ready = '250 OK\r\n250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n250-status/circuit-established=1\r\n250-status/enough-dir-info=1\r\n250 OK\r\n250 closing connection\r\n';
  expect(parseControlReplies(ready)).toEqual({ bootstrapPercent: 100, tag: 'done', circuitEstablished: true, enoughDirInfo: true });
  const stuck = '250 OK\r\n250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting"\r\n250-status/circuit-established=0\r\n250-status/enough-dir-info=0\r\n250 OK\r\n';
  expect(parseControlReplies(stuck)).toMatchObject({ bootstrapPercent: 5, circuitEstablished: false });
  expect(() => parseControlReplies('515 Authentication failed\r\n')).toThrow(/refused the control cookie/);
  expect(() => parseControlReplies('250 OK\r\n250 OK\r\n')).toThrow(/no bootstrap phase/);
});
