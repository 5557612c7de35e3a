// Chats with a lab node through the official openai client; run inside the node's namespace by
// test/e2e/lab.test.ts. Prints "ANSWER <json string>" or exits non-zero.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const [url, tokenFile, model, prompt] = process.argv.slice(2);
if (!url || !tokenFile || !model || !prompt) {
  console.error('usage: chat-client.ts <url> <token file> <model> <prompt>');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: readFileSync(tokenFile, 'utf8').trim(), maxRetries: 0, timeout: 30_000 });
const completion = await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 16 });
console.log(`ANSWER ${JSON.stringify(completion.choices[0]?.message.content ?? '')}`);
