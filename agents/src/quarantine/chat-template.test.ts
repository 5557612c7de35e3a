import { CHAT_TEMPLATE_PATTERNS, findChatTemplateInjection, isChatTemplateKey, MAX_CHAT_TEMPLATE_BYTES } from './chat-template.js';
import { Reason } from './verdict.js';

const key = 'tokenizer.chat_template';

it('has the 26 SecAI OS patterns', () => {
  expect(CHAT_TEMPLATE_PATTERNS).toHaveLength(26);
});

it.each([
  "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
  "{{ ''.__class__.__mro__[1].__subclasses__() }}",
  '{{ self._TemplateReference__context.joiner.__init__.__globals__ }}',
  '{{ lipsum.__globals__["os"].system("id") }}',
  "{{ request.application.__globals__.__builtins__.__import__('os') }}",
  '{{ config["SECRET_KEY"] }}',
  "{% set x = namespace(a=1) %}{{ x }}",
  '{{ messages }} wget http://x',
  'SUBPROCESS.run',
  "{{ open('/etc/passwd').read() }}",
  '{{ socket.create_connection }}',
  "{{ nc -e /bin/sh }}",
])('rejects %s', (template) => {
  expect(findChatTemplateInjection([{ key, text: template }])?.reason).toBe(Reason.ChatTemplateInjection);
});

it('every pattern matches something and is case-insensitive', () => {
  const samples = ['__class__', '__MRO__', '__Subclasses__', '__globals__', '__builtins__', '__init__', '__import__', 'OS.SYSTEM', 'subprocess', 'EVAL(', 'exec(', 'compile(', 'getattr(', 'setattr(', 'OPEN(', 'read(', 'write(', 'requests.', 'CURL ', 'cycler', 'joiner', 'Namespace', 'lipsum', 'self._TemplateReference__context', 'request.environ', 'config['];
  CHAT_TEMPLATE_PATTERNS.forEach((pattern, i) => expect(pattern.test(samples[i]!)).toBe(true));
});

it('passes a plain chat template, and words that merely end in nc', () => {
  const template = "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %} sync";
  expect(findChatTemplateInjection([{ key, text: template }])).toBeUndefined();
});

it('rejects a template of more than 1,000,000 bytes', () => {
  expect(findChatTemplateInjection([{ key, text: 'a'.repeat(MAX_CHAT_TEMPLATE_BYTES + 1) }])?.reason).toBe(Reason.ChatTemplateTooLong);
});

it('checks keys that contain chat_template', () => {
  expect(['tokenizer.chat_template', 'tokenizer.chat_template.tool_use', 'tokenizer.chat_templates', 'X.CHAT_TEMPLATE'].every(isChatTemplateKey)).toBe(true);
  expect(isChatTemplateKey('general.name')).toBe(false);
});
