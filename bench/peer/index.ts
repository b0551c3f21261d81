// Benchmark peer, never deployed: the same MCP surface as the server's `hash` tool, written
// the usual TypeScript way on Workers: `agents` createMcpHandler around an
// @modelcontextprotocol/sdk McpServer (a fresh server per request, stateless transport: no
// initialize or session needed), JSON responses, and bearer auth by an HS256 JWT checked
// with jose (signature, exp, iss = the request's origin, aud = its /mcp URL).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createMcpHandler } from 'agents/mcp';
import { jwtVerify } from 'jose';
import { z } from 'zod';

interface Env {
  JWT_SECRET: string;
}

const encoder = new TextEncoder();
let secretKey: Uint8Array | undefined;

function buildServer(): McpServer {
  const server = new McpServer({ name: 'ts-peer', version: '1.0.0' });
  server.registerTool(
    'hash',
    {
      title: 'Hash text',
      description: 'Computes the SHA-256, SHA-384 or SHA-512 digest of a UTF-8 text, as hex or base64.',
      inputSchema: {
        text: z.string().describe('the text to hash, as UTF-8 bytes'),
        algorithm: z.enum(['sha256', 'sha384', 'sha512']).default('sha256'),
        encoding: z.enum(['hex', 'base64']).default('hex'),
      },
      outputSchema: {
        algorithm: z.string(),
        encoding: z.string(),
        digest: z.string(),
        bytes: z.number().int(),
      },
      annotations: { readOnlyHint: true, idempotentHint: true },
    },
    async ({ text, algorithm, encoding }) => {
      const data = encoder.encode(text);
      const name = { sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512' }[algorithm];
      const bytes = new Uint8Array(await crypto.subtle.digest(name, data));
      const digest = encoding === 'hex'
        ? Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
        : btoa(String.fromCharCode(...bytes));
      const result = { algorithm, encoding, digest, bytes: data.length };
      return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
    },
  );
  return server;
}

function unauthorized(origin: string, error?: string): Response {
  const challenge = `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource"`
    + (error ? `, error="${error}"` : '');
  return Response.json(
    { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'unauthorized' } },
    { status: 401, headers: { 'www-authenticate': challenge } },
  );
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== '/mcp') return new Response('not found', { status: 404 });
    const auth = request.headers.get('authorization');
    if (!auth?.startsWith('Bearer ')) return unauthorized(url.origin);
    secretKey ??= encoder.encode(env.JWT_SECRET);
    let props: Record<string, unknown>;
    try {
      const { payload } = await jwtVerify(auth.slice(7), secretKey, {
        algorithms: ['HS256'],
        issuer: url.origin,
        audience: `${url.origin}/mcp`,
      });
      props = { sub: payload.sub, scope: payload.scope };
    } catch {
      return unauthorized(url.origin, 'invalid_token');
    }
    return createMcpHandler(buildServer(), { enableJsonResponse: true, authContext: { props } })(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
