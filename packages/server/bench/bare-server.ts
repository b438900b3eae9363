import Fastify from 'fastify';

/**
 * The baseline of bench:reserve: a bare Fastify route on the same machine that parses the same JSON
 * body and answers a response of the same shape, with no auth, validation or storage.
 */
const app = Fastify({ logger: false });
app.post('/reserve', async (request) => {
  const body = request.body as { fromNumber?: string };
  return {
    status: 'success',
    mode: 'number',
    handle: { routableNumber: '+12125550100', uid: `lease:did:+12125550100:${Date.now()}:${body.fromNumber ?? ''}`, expiresAt: new Date().toISOString() },
  };
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`listening ${url}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
