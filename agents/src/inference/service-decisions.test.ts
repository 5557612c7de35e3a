import { ServiceState, type ServicePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { decideServices, servicePlanProblem, serviceSettings, type DesiredInference, type ServiceDecision } from './service-decisions.js';

const TRUSTED = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

function plan(overrides: Partial<ServicePlan> = {}): ServicePlan {
  return {
    name: 'chat',
    model: 'tiny',
    modelSha256: TRUSTED,
    gpuLayers: 0,
    contextSize: 0,
    threads: 0,
    parallelRequests: 0,
    queueDepth: 4,
    port: 8465,
    authTokenSha256: 'c'.repeat(64),
    ...overrides,
  };
}

const summary = (d: ServiceDecision) => (d.serve ? { name: d.plan.name, serve: true } : { name: d.plan.name, state: d.state, reason: d.reason });

describe('decideServices', () => {
  const isTrusted = (sha256: string) => sha256 === TRUSTED;
  const cases: Array<[string, DesiredInference, object[]]> = [
    ['serves a trusted model', { services: [plan()], revoked: new Set(), cordoned: false }, [{ name: 'chat', serve: true }]],
    [
      'waits for quarantine on a model the node does not trust',
      { services: [plan({ modelSha256: OTHER })], revoked: new Set(), cordoned: false },
      [{ name: 'chat', state: ServiceState.SERVICE_STATE_PENDING, reason: 'ModelNotTrusted' }],
    ],
    [
      'stops a revoked model even when trusted',
      { services: [plan()], revoked: new Set([TRUSTED]), cordoned: false },
      [{ name: 'chat', state: ServiceState.SERVICE_STATE_STOPPED, reason: 'ModelRevoked' }],
    ],
    [
      'serves nothing on a cordoned node',
      { services: [plan(), plan({ name: 'other', port: 8466 })], revoked: new Set(), cordoned: true },
      [
        { name: 'chat', state: ServiceState.SERVICE_STATE_STOPPED, reason: 'NodeCordoned' },
        { name: 'other', state: ServiceState.SERVICE_STATE_STOPPED, reason: 'NodeCordoned' },
      ],
    ],
    [
      'refuses a second service on the same port',
      { services: [plan(), plan({ name: 'second' })], revoked: new Set(), cordoned: false },
      [
        { name: 'chat', serve: true },
        { name: 'second', state: ServiceState.SERVICE_STATE_FAILED, reason: 'PortConflict' },
      ],
    ],
    [
      'refuses a service named twice',
      { services: [plan(), plan({ port: 9000 })], revoked: new Set(), cordoned: false },
      [
        { name: 'chat', serve: true },
        { name: 'chat', state: ServiceState.SERVICE_STATE_FAILED, reason: 'InvalidServicePlan' },
      ],
    ],
    [
      'lets several services pick free ports (port 0)',
      { services: [plan({ port: 0 }), plan({ name: 'b', port: 0 })], revoked: new Set(), cordoned: false },
      [
        { name: 'chat', serve: true },
        { name: 'b', serve: true },
      ],
    ],
  ];
  it.each(cases)('%s', (_what, desired, expected) => {
    expect(decideServices(desired, isTrusted).map(summary)).toEqual(expected);
  });
});

describe('servicePlanProblem', () => {
  it.each<[string, Partial<ServicePlan>, RegExp | undefined]>([
    ['a well-formed plan', {}, undefined],
    ['an uppercase name', { name: 'Chat' }, /DNS/],
    ['a short digest', { modelSha256: 'abc' }, /model_sha256/],
    ['an uppercase token digest', { authTokenSha256: 'C'.repeat(64) }, /auth_token_sha256/],
    ['port 70000', { port: 70000 }, /port/],
    ['a 64-token context', { contextSize: 64 }, /context_size/],
    ['100 parallel requests', { parallelRequests: 100 }, /parallel_requests/],
    ['a queue of 5000', { queueDepth: 5000 }, /queue_depth/],
    ['gpu layers -2', { gpuLayers: -2 }, /gpu_layers/],
  ])('%s', (_what, overrides, problem) => {
    const found = servicePlanProblem(plan(overrides));
    if (problem) expect(found).toMatch(problem);
    else expect(found).toBeUndefined();
  });
});

describe('serviceSettings', () => {
  it('defaults to one thread, one request at a time and a 2048-token context', () => {
    expect(serviceSettings(plan())).toEqual({ contextSize: 2048, threads: 1, parallelRequests: 1, queueDepth: 4, gpuLayers: 0 });
  });

  it('keeps what the plan sets', () => {
    expect(serviceSettings(plan({ contextSize: 8192, threads: 4, parallelRequests: 2, queueDepth: 0, gpuLayers: -1 }))).toEqual({
      contextSize: 8192,
      threads: 4,
      parallelRequests: 2,
      queueDepth: 0,
      gpuLayers: -1,
    });
  });
});
