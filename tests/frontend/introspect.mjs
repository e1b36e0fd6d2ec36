// Compares what the server's full introspection reports (as a newer tool asks for it) with
// schema.graphql, both printed by graphql-js: what codegen and schema-snapshot tools see.
import { readFileSync } from 'node:fs';
import {
  buildClientSchema, buildSchema, getIntrospectionQuery, lexicographicSortSchema, printSchema,
} from 'graphql';

const [url, sdlPath] = process.argv.slice(2);
const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
});
const response = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
  body: JSON.stringify({ query }),
});
const body = await response.json();
if (body.errors) {
  console.error(JSON.stringify(body.errors));
  process.exit(1);
}
const print = (schema) => printSchema(lexicographicSortSchema(schema));
const live = print(buildClientSchema(body.data));
const file = print(buildSchema(readFileSync(sdlPath, 'utf8')));
if (live !== file) {
  const [a, b] = [live.split('\n'), file.split('\n')];
  const at = a.findIndex((line, index) => line !== b[index]);
  console.error(`introspection and ${sdlPath} differ from line ${at + 1}:`);
  console.error(`  introspection: ${a.slice(at, at + 3).join(' | ')}`);
  console.error(`  schema file:   ${b.slice(at, at + 3).join(' | ')}`);
  process.exit(1);
}
console.log(`introspection matches ${sdlPath} (${live.split('\n').length} lines)`);
