// graphql-http's GraphQL-over-HTTP audits against a running server. Prints one line per
// audit and exits non-zero when a MUST or a SHOULD fails (MAYs are reported only).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
let failed = 0;
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  const level = audit.name.split(' ')[0];
  console.log(`${result.status.padEnd(5)} ${audit.id} ${audit.name}${result.status === 'ok' ? '' : ` — ${result.reason}`}`);
  if (result.status !== 'ok' && level !== 'MAY') failed += 1;
}
console.log(failed === 0 ? 'all MUSTs and SHOULDs pass' : `${failed} MUST/SHOULD audits failed`);
process.exit(failed === 0 ? 0 : 1);
