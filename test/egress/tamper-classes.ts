// Every way the drift tests undo a node's egress enforcement, each a real nft command run in the
// node's namespace, as someone with root on the node would: the table deleted, a chain flushed or
// replaced, a rule added or removed, an element added to or removed from an allow set, and another
// table hooking egress before ours. The drift test and the drift benchmark share them.
import { runNft, type NftTarget } from '../../agents/src/egress/nft-target.js';
import { DriftKind } from '../../api/proto/duty-results.js';

export interface TamperClass {
  name: string;
  /** The drift kind the agent must report. */
  kind: DriftKind;
  /** Whether this tamper opens the port the plan blocks (so the test can show it closed again). */
  opensBlockedPort: boolean;
  tamper(target: NftTarget): Promise<void>;
}

export interface TamperTargets {
  upstream: string;
  allowedPort: number;
  blockedPort: number;
}

/** The handle of the last rule of a chain of ours (nft -a prints `# handle N`). */
async function lastRuleHandle(target: NftTarget, chain: string): Promise<number> {
  const listing = await runNft(target, ['-a', 'list', 'chain', 'inet', 'secai', chain]);
  const handles = [...listing.matchAll(/^\s+\S.*# handle (\d+)$/gm)].map((m) => Number(m[1]));
  if (handles.length === 0) throw new Error(`chain ${chain} has no rules to remove`);
  return handles.at(-1)!;
}

export function tamperClasses({ upstream, allowedPort, blockedPort }: TamperTargets): TamperClass[] {
  const nft = (target: NftTarget, script: string) => runNft(target, ['-f', '-'], `${script}\n`).then(() => undefined);
  return [
    { name: 'table deleted', kind: DriftKind.TableMissing, opensBlockedPort: true, tamper: (t) => nft(t, 'delete table inet secai') },
    { name: 'output chain flushed', kind: DriftKind.RuleChanged, opensBlockedPort: false, tamper: (t) => nft(t, 'flush chain inet secai output') },
    {
      name: 'output chain replaced by one that accepts',
      kind: DriftKind.ChainChanged,
      opensBlockedPort: true,
      tamper: (t) => nft(t, 'flush chain inet secai output\nchain inet secai output { type filter hook output priority filter; policy accept; }'),
    },
    {
      name: 'rule added that opens the blocked port',
      kind: DriftKind.RuleChanged,
      opensBlockedPort: true,
      tamper: (t) => nft(t, `insert rule inet secai output ip daddr ${upstream} tcp dport ${blockedPort} accept`),
    },
    {
      name: 'rule removed',
      kind: DriftKind.RuleChanged,
      opensBlockedPort: false,
      tamper: async (t) => nft(t, `delete rule inet secai output handle ${await lastRuleHandle(t, 'output')}`),
    },
    {
      // The renderer sizes hash sets to their elements, so a full set takes a new one only in
      // exchange for one it holds.
      name: 'allow set element swapped for the blocked port',
      kind: DriftKind.SetElementAdded,
      opensBlockedPort: true,
      tamper: (t) => nft(t, `delete element inet secai allow_v4_tcp_port { ${upstream} . ${allowedPort} }\nadd element inet secai allow_v4_tcp_port { ${upstream} . ${blockedPort} }`),
    },
    {
      name: 'allow set element removed',
      kind: DriftKind.SetElementRemoved,
      opensBlockedPort: false,
      tamper: (t) => nft(t, `delete element inet secai allow_v4_tcp_port { ${upstream} . ${allowedPort} }`),
    },
    {
      name: 'foreign table with an accepting hook before ours',
      kind: DriftKind.ForeignHook,
      // netfilter runs our chain after it all the same; the port stays closed throughout.
      opensBlockedPort: false,
      tamper: (t) => nft(t, 'add table inet intruder\nadd chain inet intruder out { type filter hook output priority -10; policy accept; }\nadd rule inet intruder out accept'),
    },
  ];
}
