// Server-side template injection in chat templates (CVE-2024-34359, llama-cpp-python rendered
// tokenizer.chat_template with an unsandboxed Jinja2): the 26 patterns of SecAI OS format_gate,
// matched case-insensitively on every value whose key contains "chat_template". One deviation:
// `nc` and `ncat` need a word boundary before them too, or every "sync" would match.
import { Reason, type ReasonCode } from './verdict.js';

export const MAX_CHAT_TEMPLATE_BYTES = 1_000_000;

export const CHAT_TEMPLATE_PATTERNS: readonly RegExp[] = [
  /__class__/i,
  /__mro__/i,
  /__subclasses__/i,
  /__globals__/i,
  /__builtins__/i,
  /__init__/i,
  /__import__/i,
  /os\.(?:system|popen|exec|spawn|fork)/i,
  /subprocess/i,
  /eval\(/i,
  /exec\(/i,
  /compile\(/i,
  /getattr\(/i,
  /setattr\(/i,
  /open\(/i,
  /read\(/i,
  /write\(/i,
  /(?:requests|urllib|http\.client|socket)\./i,
  /(?:curl|wget|\bnc|\bncat)\b/i,
  /cycler/i,
  /joiner/i,
  /namespace/i,
  /lipsum/i,
  /self\._TemplateReference__context/i,
  /request\.(?:application|environ)/i,
  /config\[/i,
];

export interface ChatTemplateFinding {
  reason: ReasonCode;
  key: string;
  message: string;
}

/** Checks the values of chat-template keys; returns the first problem. */
export function findChatTemplateInjection(templates: readonly { key: string; text: string }[]): ChatTemplateFinding | undefined {
  for (const { key, text } of templates) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MAX_CHAT_TEMPLATE_BYTES) return { reason: Reason.ChatTemplateTooLong, key, message: `${key} is ${bytes} bytes, more than ${MAX_CHAT_TEMPLATE_BYTES}` };
    for (const pattern of CHAT_TEMPLATE_PATTERNS) {
      if (pattern.test(text)) return { reason: Reason.ChatTemplateInjection, key, message: `${key} matches the template-injection pattern ${pattern.source}` };
    }
  }
  return undefined;
}

export function isChatTemplateKey(key: string): boolean {
  return key.toLowerCase().includes('chat_template');
}
