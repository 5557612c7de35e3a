// Writes boot event logs in the TCG PC Client crypto-agile format, the way UEFI firmware does, for
// tests and the lab: the Spec ID event, an optional StartupLocality event, then TCG_PCR_EVENT2
// records with one digest per bank. `simulatedFirmwareBoot` is the sequence a UEFI boot with shim,
// GRUB and a kernel measures (with realistic sizes for db, dbx and the other variables), and
// `measureOnTpm` extends a TPM's PCRs with exactly what the log says, so that the log replays to
// what the TPM quotes, as it does after a real measured boot.
import { createHash } from 'node:crypto';
import { runChecked, runCommand } from '../../agents/src/exec.js';
import { EventType } from '../../operator/src/attestation/event-log.js';
import { TPM_HASHES, TpmAlg } from '../../operator/src/attestation/tpm-structures.js';

export interface LoggedEvent {
  pcr: number;
  type: number;
  data: Buffer;
  /** Digests to log instead of the hash of `data` (an image's Authenticode hash, or a forgery). */
  digests?: Map<number, Buffer>;
}

export const EV = {
  ...EventType,
  EV_POST_CODE: 0x00000001,
  EV_ACTION: 0x00000005,
  EV_S_CRTM_VERSION: 0x00000008,
  EV_IPL: 0x0000000d,
  EV_EFI_VARIABLE_BOOT: 0x80000002,
  EV_EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EV_EFI_GPT_EVENT: 0x80000006,
  EV_EFI_ACTION: 0x80000007,
  EV_EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EV_EFI_HANDOFF_TABLES: 0x80000009,
  EV_EFI_VARIABLE_AUTHORITY: 0x800000e0,
} as const;

const le32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const le16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const le64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

export const DEFAULT_BANKS = [TpmAlg.SHA1, TpmAlg.SHA256];

/** The digest each bank gets for an event: its own, or the hash of its data (zeros for EV_NO_ACTION). */
export function eventDigest(event: LoggedEvent, alg: number): Buffer {
  const given = event.digests?.get(alg);
  if (given) return given;
  const hash = TPM_HASHES.get(alg)!;
  if (event.type === EV.EV_NO_ACTION) return Buffer.alloc(hash.size);
  return createHash(hash.name).update(event.data).digest();
}

export function writeEventLog(events: LoggedEvent[], options: { banks?: number[]; startupLocality?: number } = {}): Buffer {
  const banks = options.banks ?? DEFAULT_BANKS;
  const specId = Buffer.concat([
    Buffer.from('Spec ID Event03\0', 'ascii'),
    le32(0), // platformClass: client
    Buffer.from([0, 2, 0, 2]), // minor 0, major 2, errata 0, uintnSize 2 (64-bit UINTN)
    le32(banks.length),
    ...banks.map((alg) => Buffer.concat([le16(alg), le16(TPM_HASHES.get(alg)!.size)])),
    Buffer.from([0]),
  ]);
  const parts: Buffer[] = [le32(0), le32(EV.EV_NO_ACTION), Buffer.alloc(20), le32(specId.length), specId];
  const all: LoggedEvent[] = [
    ...(options.startupLocality !== undefined
      ? [{ pcr: 0, type: EV.EV_NO_ACTION, data: Buffer.concat([Buffer.from('StartupLocality\0', 'ascii'), Buffer.from([options.startupLocality])]) }]
      : []),
    ...events,
  ];
  for (const event of all) {
    parts.push(le32(event.pcr), le32(event.type), le32(banks.length));
    for (const alg of banks) parts.push(le16(alg), eventDigest(event, alg));
    parts.push(le32(event.data.length), event.data);
  }
  return Buffer.concat(parts);
}

/** The PCR values a log's events extend to, computed independently of the parser under test. */
export function expectedPcrs(events: LoggedEvent[], alg: number, startupLocality = 0): Map<number, Buffer> {
  const hash = TPM_HASHES.get(alg)!;
  const pcrs = new Map<number, Buffer>();
  for (const event of events) {
    if (event.type === EV.EV_NO_ACTION) continue;
    const initial = Buffer.alloc(hash.size);
    if (event.pcr === 0) initial[hash.size - 1] = startupLocality;
    pcrs.set(event.pcr, createHash(hash.name).update(pcrs.get(event.pcr) ?? initial).update(eventDigest(event, alg)).digest());
  }
  return pcrs;
}

const EFI_GLOBAL_VARIABLE = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex');
const EFI_IMAGE_SECURITY_DATABASE = Buffer.from('cbb219d73a3d9645a3bcdad00e67656f', 'hex');

/** UEFI_VARIABLE_DATA as firmware measures a variable. */
export function variableEvent(name: string, data: Buffer, guid = EFI_GLOBAL_VARIABLE): Buffer {
  return Buffer.concat([guid, le64(name.length), le64(data.length), Buffer.from(name, 'utf16le'), data]);
}

/** Deterministic filler of `size` bytes standing for certificates and hashes. */
const filler = (tag: string, size: number) => {
  const out = Buffer.alloc(size);
  for (let i = 0, block = 0; i < size; block++) {
    const chunk = createHash('sha256').update(`${tag}:${block}`).digest();
    i += chunk.copy(out, i);
  }
  return out;
};

const digestsOf = (bytes: Buffer): Map<number, Buffer> => new Map(DEFAULT_BANKS.map((alg) => [alg, createHash(TPM_HASHES.get(alg)!.name).update(bytes).digest()]));
const image = (name: string) => digestsOf(Buffer.from(`authenticode:${name}`));

/**
 * What UEFI firmware, shim and GRUB measure on a boot of Debian with Secure Boot on or off: firmware
 * blobs into PCR 0, the Secure Boot variables (SecureBoot, PK, KEK, db with a few certificates, a
 * dbx with a few hundred hashes) into PCR 7, boot variables into PCR 1, GPT into PCR 5, the boot
 * applications into PCR 4, separators into PCR 0 to 7, GRUB's commands into PCR 8. About 60 KiB.
 */
export function simulatedFirmwareBoot(options: { secureBoot: boolean; tag?: string }): LoggedEvent[] {
  const tag = options.tag ?? 'secai-lab';
  const separator = (pcr: number): LoggedEvent => ({ pcr, type: EV.EV_SEPARATOR, data: Buffer.alloc(4) });
  const events: LoggedEvent[] = [
    { pcr: 0, type: EV.EV_S_CRTM_VERSION, data: Buffer.from('1.0\0', 'utf16le') },
    ...[0, 1, 2].map((i): LoggedEvent => ({ pcr: 0, type: EV.EV_EFI_PLATFORM_FIRMWARE_BLOB, data: Buffer.concat([le64(0xffc00000 + i * 0x100000), le64(0x100000)]), digests: image(`${tag}-fv${i}`) })),
    { pcr: 7, type: EV.EV_EFI_VARIABLE_DRIVER_CONFIG, data: variableEvent('SecureBoot', Buffer.from([options.secureBoot ? 1 : 0])) },
    { pcr: 7, type: EV.EV_EFI_VARIABLE_DRIVER_CONFIG, data: variableEvent('PK', filler('pk', 850)) },
    { pcr: 7, type: EV.EV_EFI_VARIABLE_DRIVER_CONFIG, data: variableEvent('KEK', filler('kek', 1560)) },
    { pcr: 7, type: EV.EV_EFI_VARIABLE_DRIVER_CONFIG, data: variableEvent('db', filler('db', 3143), EFI_IMAGE_SECURITY_DATABASE) },
    { pcr: 7, type: EV.EV_EFI_VARIABLE_DRIVER_CONFIG, data: variableEvent('dbx', filler('dbx', 13_000), EFI_IMAGE_SECURITY_DATABASE) },
    { pcr: 1, type: EV.EV_EFI_HANDOFF_TABLES, data: Buffer.concat([le64(1), filler('smbios-guid', 16), le64(0x7f000000)]) },
    { pcr: 1, type: EV.EV_EFI_VARIABLE_BOOT, data: variableEvent('BootOrder', Buffer.from([0, 0, 1, 0])) },
    ...[0, 1].map((i): LoggedEvent => ({ pcr: 1, type: EV.EV_EFI_VARIABLE_BOOT, data: variableEvent(`Boot000${i}`, filler(`boot${i}`, 120 + i * 40)) })),
    { pcr: 4, type: EV.EV_EFI_ACTION, data: Buffer.from('Calling EFI Application from Boot Option', 'ascii') },
    ...[0, 1, 2, 3, 4, 5, 6, 7].map(separator),
    { pcr: 5, type: EV.EV_EFI_GPT_EVENT, data: filler('gpt', 92 + 8 + 3 * 128) },
    ...(options.secureBoot ? [{ pcr: 7, type: EV.EV_EFI_VARIABLE_AUTHORITY, data: variableEvent('db', filler('db-cert-0', 1500), EFI_IMAGE_SECURITY_DATABASE) }] : []),
    { pcr: 4, type: EV.EV_EFI_BOOT_SERVICES_APPLICATION, data: filler('shim-path', 120), digests: image(`${tag}-shimx64.efi`) },
    ...(options.secureBoot ? [{ pcr: 7, type: EV.EV_EFI_VARIABLE_AUTHORITY, data: variableEvent('MokListRT', filler('mok-cert', 900)) }] : []),
    { pcr: 4, type: EV.EV_EFI_BOOT_SERVICES_APPLICATION, data: filler('grub-path', 110), digests: image(`${tag}-grubx64.efi`) },
    ...['set root=hd0,gpt2', 'linux /vmlinuz root=/dev/vda2 ro lockdown=integrity', 'initrd /initrd.img', 'boot'].map(
      // GRUB logs "grub_cmd: ..." and measures the command alone.
      (command): LoggedEvent => ({ pcr: 8, type: EV.EV_IPL, data: Buffer.from(`grub_cmd: ${command}\0`, 'ascii'), digests: digestsOf(Buffer.from(command, 'ascii')) }),
    ),
    { pcr: 4, type: EV.EV_EFI_BOOT_SERVICES_APPLICATION, data: filler('kernel-path', 80), digests: image(`${tag}-vmlinuz`) },
    { pcr: 5, type: EV.EV_EFI_ACTION, data: Buffer.from('Exit Boot Services Invocation', 'ascii') },
    { pcr: 5, type: EV.EV_EFI_ACTION, data: Buffer.from('Exit Boot Services Returned with Success', 'ascii') },
  ];
  return events;
}

const BANK_NAMES = new Map([
  [TpmAlg.SHA1, 'sha1'],
  [TpmAlg.SHA256, 'sha256'],
  [TpmAlg.SHA384, 'sha384'],
]);

/** Extends the TPM's PCRs with each event's digests, in order (what the firmware does as it logs). */
export async function measureOnTpm(tcti: string, events: LoggedEvent[], banks = DEFAULT_BANKS): Promise<void> {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const extends_ = events
    .filter((e) => e.type !== EV.EV_NO_ACTION)
    .map((e) => `${e.pcr}:${banks.map((alg) => `${BANK_NAMES.get(alg)}=${eventDigest(e, alg).toString('hex')}`).join(',')}`);
  // tpm2_pcrextend takes many PCR:digest arguments per call.
  for (let i = 0; i < extends_.length; i += 16) {
    await runChecked(runCommand, 'tpm2_pcrextend', extends_.slice(i, i + 16), { env, timeoutMs: 10_000 });
  }
}
