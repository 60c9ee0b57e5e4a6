// Checks docs/openapi.yaml against a running nginx with the module, and against the
// module's route table. Prints TAP (t/openapi.t passes each line on to prove).
//
//   node t/openapi/check.mjs --base http://127.0.0.1:PORT --database-url URL \
//       --storage DIR [--doc docs/openapi.yaml] [--routes src/api/ngx_http_chathistory_api.c]
//
// 1. The routes: every pattern and method of ngx_http_chathistory_routes (and its Allow
//    string) is a documented /api and /v1 path and operation, and nothing else is.
// 2. The operations: requests built from the document's examples must succeed; the cases
//    below must give the status they name; every answer (status, Content-Type, documented
//    headers, body schema) must be what the document says for that operation; every
//    documented status of every operation (but 500 and 503) must have been seen.
// 3. The request schemas: what the module accepts the document accepts, and what it
//    refuses with 400 the document refuses too (unless a case says the schema cannot
//    tell, as for "from after to").
// 4. Other methods: every method a path does not document is 405 with that path's Allow.
//
// The nginx it talks to is configured by t/openapi.t: /api/ and /v1/ (chathistory_auth,
// a limit_req of 1r/m for the "slow" organization's key, 429 answered as in
// docs/gateway.md), chathistory_audio_storage_path = --storage. It makes its own rows in
// the database (psql) and its own audio file.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

const args = parseArgs(process.argv.slice(2));
const BASE = new URL(need(args, 'base'));
const DB = need(args, 'database-url');
const STORAGE = need(args, 'storage');
const DOC_FILE = args.doc ?? path.join(root, 'docs/openapi.yaml');
const ROUTES_FILE = args.routes ?? path.join(root, 'src/api/ngx_http_chathistory_api.c');
const AUDIO_FIXTURE = path.join(root, 't/fixtures/audio/speech.opus');

// statuses documented but not provoked here: the database or embedding server away
// (t/database_down.t, t/database_faults.t, t/search_embedding.t), or a failure
const NOT_PROVOKED = new Set(['500', '503']);

// the fixtures; the document's examples use the same ids
const ORG = '0190c0de-0000-7000-8000-000000000001';
const OTHER_ORG = '0190c0de-0000-7000-8000-000000000002';
const SLOW_ORG = '0190c0de-0000-7000-8000-000000000003';
const GONE_ORG = '0190c0de-0000-7000-8000-000000000004';
const S = '0190c0de-0000-7000-8000-000000000010';
const OTHER_S = '0190c0de-0000-7000-8000-000000000020';
const M_AUDIO = '0190c0de-0000-7000-8000-000000000100';
const M_NONE = '0190c0de-0000-7000-8000-000000000101';
const M_LOST = '0190c0de-0000-7000-8000-000000000102';
const UNKNOWN = '0190c0de-0000-7000-8000-00000000ffff';
const KEY = 'chk_openapiCheckKeyOfTheDocsOrganization_0000';
const KEY_OTHER = 'chk_openapiCheckKeyOfTheOtherOrganization_00';
const KEY_SLOW = 'chk_openapiCheckKeyOfTheSlowOrganization_000';
const KEY_GONE = 'chk_openapiCheckKeyOfAnOrganizationToDelete0';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND'];

let testNo = 0;
let failures = 0;

function ok(cond, name, diag) {
    testNo++;
    if (!cond) {
        failures++;
    }
    console.log(`${cond ? 'ok' : 'not ok'} ${testNo} - ${name}`);
    if (!cond && diag) {
        for (const line of String(diag).split('\n')) {
            console.log(`# ${line}`);
        }
    }
    return cond;
}

function parseArgs(argv) {
    const out = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
            throw new Error(`bad argument ${argv[i]}`);
        }
        out[argv[i].slice(2)] = argv[i + 1];
    }
    return out;
}

function need(a, name) {
    if (a[name] === undefined) {
        throw new Error(`--${name} is required`);
    }
    return a[name];
}


// ------------------------------------------------------------------ the document

const doc = YAML.parse(fs.readFileSync(DOC_FILE, 'utf8'));

function pointer(ref) {
    if (!ref.startsWith('#/')) {
        throw new Error(`only local $refs are supported: ${ref}`);
    }
    return ref.slice(2).split('/').reduce((o, k) => {
        const key = k.replace(/~1/g, '/').replace(/~0/g, '~');
        if (o === undefined || !(key in o)) {
            throw new Error(`unresolved $ref ${ref}`);
        }
        return o[key];
    }, doc);
}

function deref(obj) {
    while (obj && obj.$ref) {
        obj = pointer(obj.$ref);
    }
    return obj;
}

const SCHEMAS_ID = 'https://chathistory.invalid/openapi-schemas';

function rewriteRefs(node) {
    if (Array.isArray(node)) {
        return node.map(rewriteRefs);
    }
    if (node && typeof node === 'object') {
        const out = {};
        for (const [k, v] of Object.entries(node)) {
            if (k === '$ref' && typeof v === 'string'
                && v.startsWith('#/components/schemas/'))
            {
                out[k] = `${SCHEMAS_ID}#/$defs/${v.slice('#/components/schemas/'.length)}`;
            } else if (k === 'example') {
                // OpenAPI's annotation; not a JSON Schema keyword
            } else {
                out[k] = rewriteRefs(v);
            }
        }
        return out;
    }
    return node;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false,
                         allowUnionTypes: true });
addFormats(ajv);
ajv.addSchema({ $id: SCHEMAS_ID, $defs: rewriteRefs(doc.components.schemas) });

const compiled = new Map();

function validator(schema) {
    const key = JSON.stringify(schema);
    if (!compiled.has(key)) {
        compiled.set(key, ajv.compile(rewriteRefs(schema)));
    }
    return compiled.get(key);
}

function validate(schema, value) {
    const v = validator(schema);
    return v(value) ? null : ajv.errorsText(v.errors, { dataVar: 'value' });
}

// path template -> { method -> operation }, and the path items
const operations = [];
for (const [p, item] of Object.entries(doc.paths)) {
    for (const m of ['get', 'head', 'post', 'put', 'patch', 'delete', 'options', 'trace']) {
        if (item[m]) {
            operations.push({ path: p, method: m.toUpperCase(), op: item[m], item });
        }
    }
}

function findOp(p, method) {
    return operations.find(o => o.path === p && o.method === method);
}

function documentedMethods(p) {
    return operations.filter(o => o.path === p).map(o => o.method);
}

function opParams(o) {
    return [...(o.item.parameters ?? []), ...(o.op.parameters ?? [])].map(deref);
}


// ------------------------------------------------------------------ 1. the routes

function routesOfModule() {
    const src = fs.readFileSync(ROUTES_FILE, 'utf8');
    const table = src.match(/ngx_http_chathistory_routes\[\]\s*=\s*\{([\s\S]*?)\n\};/);
    if (!table) {
        throw new Error(`no ngx_http_chathistory_routes table in ${ROUTES_FILE}`);
    }
    const routes = [];
    const re = /\{\s*"([^"]+)",\s*"([^"]+)",\s*\{([\s\S]*?)\{\s*0,\s*NULL\s*\}\s*\}\s*\}/g;
    let m;
    while ((m = re.exec(table[1])) !== null) {
        const bits = [...m[3].matchAll(/NGX_HTTP_([A-Z]+)\b/g)].map(x => x[1]);
        routes.push({ pattern: m[1], allow: m[2], methods: bits });
    }
    return routes;
}

function templateOf(pattern) {
    return pattern.replace(/:s\b/g, '{session_id}').replace(/:m\b/g, '{message_id}');
}

const sameSet = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

function checkRoutes() {
    const routes = routesOfModule();
    ok(routes.length > 0, `the route table of ${path.relative(root, ROUTES_FILE)} was read`);

    const expected = new Set();
    for (const r of routes) {
        const allow = r.allow.split(', ');
        ok(sameSet(allow, r.methods),
           `route ${r.pattern}: its Allow "${r.allow}" lists the methods it has`,
           `methods in the table: ${r.methods.join(', ')}`);
        for (const prefix of ['/api/', '/v1/']) {
            const p = prefix + templateOf(r.pattern);
            expected.add(p);
            ok(p in doc.paths, `route ${r.pattern} is documented as ${p}`);
            if (p in doc.paths) {
                ok(sameSet(documentedMethods(p), allow),
                   `${p}: the documented methods are the route's (${r.allow})`,
                   `documented: ${documentedMethods(p).join(', ')}`);
                ok(doc.paths[p]['x-other-methods'] !== undefined,
                   `${p}: x-other-methods documents the 405`);
                ok((doc.paths[p].description ?? '').includes(`Allow: ${r.allow}`),
                   `${p}: its description names "Allow: ${r.allow}"`);
            }
        }
    }
    for (const p of Object.keys(doc.paths)) {
        ok(expected.has(p), `documented path ${p} is a route of the module`);
    }
    return routes;
}

// What a client generator needs to make a client without hand fixes: a unique
// operationId for every operation, a schema for every JSON body it sends or gets, the
// error answers (4XX and 5XX) described with the shared error schema.
function checkGeneratable() {
    const ids = operations.map(o => o.op.operationId);
    ok(ids.every(id => typeof id === 'string' && /^[a-z][A-Za-z0-9]*$/.test(id)),
       'every operation has an operationId fit for a method name',
       ids.filter(id => !/^[a-z][A-Za-z0-9]*$/.test(id ?? '')).join(', '));
    ok(new Set(ids).size === ids.length, 'the operationIds are unique');
    const errorRef = '#/components/schemas/Error';
    for (const o of operations) {
        const rb = deref(o.op.requestBody);
        if (rb) {
            ok(rb.content?.['application/json']?.schema !== undefined,
               `${o.method} ${o.path}: its request body has a JSON schema`);
        }
        for (const [status, r] of Object.entries(o.op.responses)) {
            const spec = deref(r);
            for (const [type, c] of Object.entries(spec.content ?? {})) {
                if (/json/.test(type)) {
                    ok(c.schema !== undefined, `${o.method} ${o.path} ${status}: a JSON schema`);
                }
            }
            const json = spec.content?.['application/json'];
            if (/^[45]/.test(status) && o.method !== 'HEAD' && json) {
                const isError = json.schema?.$ref === errorRef
                                || (/^\/(api|v1)\/health$/.test(o.path) && status === '503');
                ok(isError, `${o.method} ${o.path} ${status}: the error schema`);
            }
        }
    }
}


// ------------------------------------------------------------------ fixtures

function sql(statement) {
    return execFileSync('psql', [DB, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                                 '-c', statement], { encoding: 'utf8' }).trim();
}

let deletable = 0;

function freshSession() {
    const id = `0190c0de-0000-7000-8000-0000000d${String(++deletable).padStart(4, '0')}`;
    sql(`INSERT INTO sessions (id, org_id, source_lang, target_lang)
         VALUES ('${id}', '${ORG}', 'en', 'es')`);
    return id;
}

function makeFixtures() {
    sql(`DELETE FROM organizations WHERE id IN ('${ORG}', '${OTHER_ORG}', '${SLOW_ORG}',
                                                '${GONE_ORG}')
             OR name LIKE 'openapi-%';
         INSERT INTO organizations (id, name) VALUES ('${ORG}', 'openapi-docs'),
             ('${OTHER_ORG}', 'openapi-other'), ('${SLOW_ORG}', 'openapi-slow'),
             ('${GONE_ORG}', 'openapi-gone');
         INSERT INTO api_keys (org_id, name, key_hash) VALUES
             ('${ORG}', 'openapi', sha256('${KEY}'::bytea)),
             ('${OTHER_ORG}', 'openapi-other', sha256('${KEY_OTHER}'::bytea)),
             ('${SLOW_ORG}', 'openapi-slow', sha256('${KEY_SLOW}'::bytea)),
             ('${GONE_ORG}', 'openapi-gone', sha256('${KEY_GONE}'::bytea));
         INSERT INTO sessions (id, org_id, title, source_lang, target_lang, audio_enabled)
             VALUES ('${S}', '${ORG}', 'Support call', 'en', 'es', true),
                    ('${OTHER_S}', '${OTHER_ORG}', 'elsewhere', 'en', 'es', true);
         INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,
                               source_text, translated_text, stt_ms, translate_ms,
                               tts_ms, model_used, audio_path, audio_ms)
             VALUES ('${M_AUDIO}', '${S}', '${ORG}', 'en', 'es', 'the zebra at the zoo',
                     'la cebra del zoológico', 120, 35, 210, 'whisper-small',
                     '${S}/${M_AUDIO}.opus', 2557),
                    ('${M_NONE}', '${S}', '${ORG}', 'en', 'es', 'a zebra without audio',
                     'una cebra sin audio', NULL, NULL, NULL, NULL, NULL, NULL),
                    ('${M_LOST}', '${S}', '${ORG}', 'en', 'es', 'the lost zebra',
                     'la cebra perdida', 1, 2, 3, 'm', '${S}/${M_LOST}.opus', 10)`);
    fs.mkdirSync(path.join(STORAGE, S), { recursive: true });
    fs.copyFileSync(AUDIO_FIXTURE, path.join(STORAGE, S, `${M_AUDIO}.opus`));
}


// ------------------------------------------------------------------ HTTP

function send({ method, url, headers = {}, body }) {
    return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined
                      : Buffer.isBuffer(body) ? body : Buffer.from(body);
        const h = { ...headers };
        if (payload !== undefined) {
            h['Content-Length'] = payload.length;
        }
        const req = http.request(new URL(url, BASE), { method, headers: h, agent: false },
                                 res => {
            const chunks = [];
            res.on('data', c => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                          rawHeaders: res.rawHeaders,
                                          body: Buffer.concat(chunks) }));
            res.on('error', reject);
        });
        req.setTimeout(15000, () => req.destroy(new Error('timed out')));
        req.on('error', reject);
        if (payload !== undefined) {
            req.end(payload);
        } else {
            req.end();
        }
    });
}

function fillPath(template, ids) {
    return template.replace(/\{(\w+)\}/g, (_, name) => {
        if (ids[name] === undefined) {
            throw new Error(`no value for {${name}} in ${template}`);
        }
        return encodeURIComponent(ids[name]);
    });
}

function mediaType(value) {
    const [type, ...params] = String(value).split(';').map(s => s.trim().toLowerCase());
    return { type, params: params.filter(Boolean) };
}

function contentMatches(docKey, actual) {
    const d = mediaType(docKey);
    const a = mediaType(actual);
    return d.type === a.type && d.params.every(p => a.params.includes(p));
}

const seen = new Map();   // "METHOD path" -> Set of statuses seen

// Check one answer against what the document says of the operation (or of the path's
// other methods, for a 405). Returns a list of problems.
function conformance(o, req, res, pathItem) {
    const problems = [];
    const status = String(res.status);
    let spec;

    if (o) {
        spec = o.op.responses[status];
        if (!spec) {
            return [`status ${status} is not documented for ${o.method} ${o.path}`
                    + ` (documented: ${Object.keys(o.op.responses).join(', ')})`];
        }
    } else {
        if (status !== '405') {
            return [`a method the path does not have gave ${status}, not 405`];
        }
        spec = pathItem['x-other-methods'];
    }
    spec = deref(spec);

    const ct = res.headers['content-type'];
    const noBody = req.method === 'HEAD' || status === '204' || status === '304';

    if (spec.content) {
        const key = Object.keys(spec.content).find(k => ct !== undefined
                                                         && contentMatches(k, ct));
        if (key === undefined) {
            problems.push(`Content-Type ${ct} is not among the documented `
                          + `${Object.keys(spec.content).join(', ')}`);
        } else if (noBody) {
            if (res.body.length) {
                problems.push(`a ${req.method} answer ${status} has a body`);
            }
        } else if (/json/.test(key)) {
            let value;
            try {
                value = JSON.parse(res.body.toString('utf8'));
            } catch (e) {
                problems.push(`the body is not JSON: ${res.body.toString('utf8').slice(0, 200)}`);
            }
            if (value !== undefined) {
                const err = validate(spec.content[key].schema, value);
                if (err) {
                    problems.push(`the body does not match the schema: ${err}\n`
                                  + JSON.stringify(value).slice(0, 500));
                }
            }
        } else if (res.body.length === 0) {
            problems.push(`a ${key} answer with an empty body`);
        }
    } else if (res.body.length) {
        problems.push(`no content is documented, but the answer has a body (${ct})`);
    }

    for (const [name, h] of Object.entries(spec.headers ?? {})) {
        const hdr = deref(h);
        const value = res.headers[name.toLowerCase()];
        if (value === undefined) {
            if (hdr.required) {
                problems.push(`the documented header ${name} is missing`);
            }
            continue;
        }
        const err = validate(hdr.schema, value);
        if (err) {
            problems.push(`header ${name}: "${value}": ${err}`);
        }
    }

    return problems;
}

// Query and path values against the documented parameters; true when all are valid.
function paramsValid(o, ids, query) {
    const errors = [];
    for (const p of opParams(o)) {
        let value;
        if (p.in === 'path') {
            value = ids[p.name];
        } else if (p.in === 'query') {
            value = query?.[p.name];
        } else {
            continue;
        }
        if (value === undefined) {
            if (p.required) {
                errors.push(`${p.name} is required`);
            }
            continue;
        }
        const type = p.schema.type;
        if (type === 'integer' && /^-?[0-9]+$/.test(value)) {
            value = Number(value);
        }
        const err = validate(p.schema, value);
        if (err) {
            errors.push(`${p.name}: ${err}`);
        }
    }
    for (const name of Object.keys(query ?? {})) {
        if (!opParams(o).some(p => p.in === 'query' && p.name === name)) {
            errors.push(`${name} is not a documented query parameter`);
        }
    }
    return errors;
}

function bodySchema(o) {
    const rb = deref(o.op.requestBody);
    return rb?.content?.['application/json']?.schema;
}

function authHeaders(prefix, key, n) {
    if (prefix !== '/v1' || key === null) {
        return {};
    }
    // both schemes, in turn
    return n % 2 ? { 'X-API-Key': key } : { Authorization: `Bearer ${key}` };
}

let sent = 0;
const created = [];

// One case: send it, check the status it names and the answer's conformance, and check
// that the document agrees with the module about the request's validity.
async function run(c) {
    const o = findOp(c.path, c.method);
    const ids = { session_id: S, message_id: M_AUDIO, ...c.ids };
    const qs = new URLSearchParams(c.query ?? {}).toString();
    const url = fillPath(c.path, ids) + (c.rawQuery ?? (qs ? `?${qs}` : ''));
    const headers = { ...authHeaders(c.path.slice(0, 3), c.key === undefined ? KEY : c.key,
                                     sent++),
                      ...c.headers };
    let body = c.body;
    if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
        body = JSON.stringify(body);
    }
    if (body !== undefined && !('Content-Type' in headers) && !c.noContentType) {
        headers['Content-Type'] = 'application/json';
    }

    const name = `${c.method} ${url}${c.what ? ` (${c.what})` : ''}`;
    let res;
    try {
        res = await send({ method: c.method, url, headers, body });
    } catch (e) {
        return ok(false, `${name}: answered`, e.message);
    }

    const statusOk = c.expect instanceof RegExp ? c.expect.test(String(res.status))
                                                : String(res.status) === String(c.expect);
    const problems = statusOk ? [] : [`status ${res.status}, expected ${c.expect}: `
                                      + res.body.toString('utf8').slice(0, 300)];
    problems.push(...conformance(o, { method: c.method }, res, doc.paths[c.path]));

    if (o) {
        const key = `${o.method} ${o.path}`;
        if (!seen.has(key)) {
            seen.set(key, new Set());
        }
        seen.get(key).add(String(res.status));

        // the document must agree about the request, where the module judged it
        if (res.status < 300 || (res.status === 400 && c.doc !== 'cannot tell')) {
            const bad = paramsValid(o, ids, c.query);
            const schema = bodySchema(o);
            if (schema && c.body !== undefined && typeof c.body !== 'string') {
                const err = validate(schema, c.body);
                if (err) {
                    bad.push(`body: ${err}`);
                }
            }
            if (res.status < 300 && bad.length) {
                problems.push(`the module took a request the document refuses: ${bad.join('; ')}`);
            }
            if (res.status === 400 && c.doc === 'refuses' && !bad.length) {
                problems.push('the module refused (400) a request the document accepts');
            }
        }
    }

    if (res.status === 201) {
        try {
            created.push(JSON.parse(res.body).id);
        } catch (e) {
            // reported by the conformance check
        }
    }

    if (c.also) {
        problems.push(...c.also(res));
    }

    return ok(problems.length === 0, `${name}: ${res.status}`, problems.join('\n'));
}


// ------------------------------------------------------------------ the cases

// requests made of the document's own examples: they must succeed
function exampleCases() {
    const cases = [];
    for (const o of operations) {
        if (o.method === 'HEAD') {
            continue;
        }
        const ids = {};
        if (o.method === 'DELETE') {
            ids.fresh = true;
        }
        const queries = [{}];
        const withExamples = {};
        for (const p of opParams(o)) {
            if (p.in === 'query' && p.example !== undefined) {
                withExamples[p.name] = String(p.example);
            }
        }
        if (Object.keys(withExamples).length) {
            queries.push(withExamples);
        }
        const rb = deref(o.op.requestBody);
        const examples = rb ? Object.entries(rb.content['application/json'].examples ?? {})
                            : [[null, null]];
        if (rb && !examples.length) {
            cases.push({ fail: `${o.method} ${o.path} has no request body example` });
        }
        for (const [exName, ex] of examples) {
            for (const query of queries) {
                cases.push({ method: o.method, path: o.path, query, ids,
                             body: ex ? ex.value : undefined, expect: /^2/,
                             what: exName ? `example ${exName}` : 'example' });
            }
        }
        // no Content-Type at all is taken to be JSON
        if (rb) {
            cases.push({ method: o.method, path: o.path, ids, noContentType: true,
                         body: examples[0][1].value, expect: /^2/,
                         what: 'no Content-Type' });
        }
    }
    return cases;
}

const long = n => 'x'.repeat(n);

// the documented errors, for one prefix
function errorCases(prefix) {
    const p = s => prefix + s;
    const sess = p('/sessions');
    const one = p('/sessions/{session_id}');
    const msgs = p('/sessions/{session_id}/messages');
    const audio = p('/sessions/{session_id}/messages/{message_id}/audio');
    const search = p('/search');
    const ret = p('/settings/retention');
    const refuses = 'refuses';
    const cases = [];
    const add = (c) => cases.push(c);

    // ids in the path
    for (const o of operations.filter(o => o.path.startsWith(prefix + '/'))) {
        const rb = deref(o.op.requestBody);
        const body = rb ? Object.values(rb.content['application/json'].examples)[0].value
                        : undefined;
        if (o.path.includes('{session_id}')) {
            add({ method: o.method, path: o.path, ids: { session_id: 'not-a-uuid' }, body,
                  expect: 400, doc: refuses, what: 'malformed session id' });
            add({ method: o.method, path: o.path, ids: { session_id: UNKNOWN }, body,
                  expect: 404, what: 'unknown session' });
        }
        if (o.path.includes('{message_id}')) {
            add({ method: o.method, path: o.path,
                  ids: { message_id: `${M_AUDIO.slice(0, -1)}g` }, expect: 400, doc: refuses,
                  what: 'malformed message id' });
        }
        if (rb) {
            add({ method: o.method, path: o.path, body,
                  headers: { 'Content-Type': 'text/plain' }, expect: 415,
                  what: 'not JSON' });
            add({ method: o.method, path: o.path,
                  body: `{"title": "${long(17 * 1024)}"}`, expect: 413,
                  what: 'over chathistory_api_max_body_size' });
            add({ method: o.method, path: o.path,
                  body: `{"title": "${long(1100 * 1024)}"}`, expect: 413,
                  what: 'over client_max_body_size', also: res =>
                      /text\/html/.test(res.headers['content-type'] ?? '') ? []
                      : ['expected nginx\'s own HTML page'] });
            for (const [bad, what] of [['[1, 2]', 'an array'], ['"text"', 'a string'],
                                       ['{"a": ', 'broken JSON'],
                                       ['{} {}', 'trailing bytes'], ['', 'empty']]) {
                add({ method: o.method, path: o.path, body: bad, expect: 400,
                      what: `body: ${what}` });
            }
            add({ method: o.method, path: o.path, body: { ...body, surprise: 1 },
                  expect: 400, doc: refuses, what: 'an unknown member' });
        }
    }

    // lists
    for (const [path, extra] of [[sess, {}], [msgs, {}]]) {
        for (const limit of ['0', '101', 'abc', '-1', '']) {
            add({ method: 'GET', path, query: { ...extra, limit }, expect: 400, doc: refuses,
                  what: `limit ${limit}` });
        }
        for (const limit of ['1', '100']) {
            add({ method: 'GET', path, query: { limit }, expect: 200 });
        }
        add({ method: 'GET', path, query: { cursor: '!!!' }, expect: 400, doc: refuses });
        add({ method: 'GET', path, query: { cursor: Buffer.from('v2.1.x').toString('base64url') },
              expect: 400, doc: 'cannot tell', what: 'a well-formed cursor we never gave' });
    }
    add({ method: 'GET', path: sess, query: { org_id: 'x' }, expect: 400, doc: refuses });
    add({ method: 'GET', path: msgs, query: { order: 'up' }, expect: 400, doc: refuses });
    add({ method: 'GET', path: msgs, query: { order: 'asc', limit: '1' }, expect: 200,
          also: res => JSON.parse(res.body).next_cursor ? []
                       : ['a page of 1 of 3 messages has a next_cursor'] });

    // create
    const create = (body, expect, what, doc = refuses) =>
        add({ method: 'POST', path: sess, body, expect, what, doc });
    create({ target_lang: 'es' }, 400, 'no source_lang');
    create({ source_lang: 'en' }, 400, 'no target_lang');
    create({ source_lang: null, target_lang: 'es' }, 400, 'null source_lang');
    for (const tag of ['e', 'englishlanguage', 'en_US', 'abcd', 'en-x', '123', 'en--US',
                       `en-${long(40)}`]) {
        create({ source_lang: tag, target_lang: 'es' }, 400, `source_lang ${tag.slice(0, 12)}`);
    }
    create({ source_lang: 42, target_lang: 'es' }, 400, 'source_lang a number');
    for (const tag of ['pt-br', 'sl-rozaj', 'de-CH-x-phonebk', 'zh-Hant-TW', 'es-419',
                       'en-a-bc-d-ef', 'english-language', 'en-US-posix']) {
        create({ source_lang: tag, target_lang: 'en' }, 201, `source_lang ${tag}`);
    }
    create({ source_lang: 'en', target_lang: 'es', title: long(501) }, 400, 'a long title');
    create({ source_lang: 'en', target_lang: 'es', title: 'é'.repeat(251) }, 400,
           'a title of 502 bytes in 251 characters', 'cannot tell');
    create({ source_lang: 'en', target_lang: 'es', title: long(500) }, 201, 'title of 500');
    create({ source_lang: 'en', target_lang: 'es', title: 7 }, 400, 'title a number');
    create({ source_lang: 'en', target_lang: 'es', title: null, audio_enabled: null,
             org_id: null }, 201, 'nulls');
    create({ source_lang: 'en', target_lang: 'es', audio_enabled: 'yes' }, 400,
           'audio_enabled a string');
    create({ source_lang: 'en', target_lang: 'es', org_id: 'org' }, 400, 'org_id malformed');

    // change
    const patch = (body, expect, what, doc = refuses) =>
        add({ method: 'PATCH', path: one, body, expect, what, doc });
    patch({}, 400, 'nothing to change');
    patch({ source_lang: 'fr' }, 400, 'a language');
    patch({ audio_enabled: null }, 400, 'audio_enabled null');
    patch({ audio_enabled: 'true' }, 400, 'audio_enabled a string');
    patch({ title: ['a'] }, 400, 'title an array');
    patch({ title: long(501) }, 400, 'title too long');
    patch({ audio_enabled: false }, 200, 'audio_enabled only');

    // a session's conditional requests: its ETag is checked in t/conventions.t
    const zeros = `"${'0'.repeat(32)}"`;
    add({ method: 'GET', path: one, headers: { 'If-None-Match': '*' }, expect: 304 });
    add({ method: 'GET', path: one, headers: { 'If-Match': zeros }, expect: 412 });
    add({ method: 'PATCH', path: one, headers: { 'If-Match': zeros }, body: { title: 'x' },
          expect: 412, what: 'If-Match fails' });
    add({ method: 'PATCH', path: one, headers: { 'If-Match': '*' }, body: { title: 'x' },
          expect: 200, what: 'If-Match: *', also: res =>
              /^"[0-9a-f]{32}"$/.test(res.headers.etag ?? '') ? [] : ['no ETag'] });

    // end users and metadata
    const en = { source_lang: 'en', target_lang: 'es' };
    create({ ...en, user_id: '' }, 400, 'user_id empty');
    create({ ...en, user_id: long(201) }, 400, 'user_id of 201 characters');
    create({ ...en, user_id: 'a\u0007b' }, 400, 'user_id with a control character');
    create({ ...en, user_id: 7 }, 400, 'user_id a number');
    create({ ...en, metadata: [1] }, 400, 'metadata an array');
    create({ ...en, metadata: 'pro' }, 400, 'metadata a string');
    create({ ...en, metadata: { k: long(8200) } }, 400, 'metadata over 8192 bytes',
           'cannot tell');
    create({ ...en, user_id: 'é'.repeat(200), metadata: { a: { b: [1, null] } } }, 201,
           'user_id of 200 characters, nested metadata');
    create({ ...en, user_id: null, metadata: null }, 201, 'user_id and metadata null');
    patch({ user_id: 'user-42', metadata: { plan: 'pro' } }, 200, 'user_id and metadata');
    patch({ metadata: 7 }, 400, 'metadata a number');
    patch({ user_id: '' }, 400, 'user_id empty');
    for (const [query, what] of [[{ user_id: '' }, 'user_id empty'],
                                 [{ user_id: long(201) }, 'user_id too long'],
                                 [{ metadata: '[1]' }, 'metadata an array'],
                                 [{ metadata: 'pro' }, 'metadata not JSON']]) {
        add({ method: 'GET', path: sess, query, expect: 400, doc: refuses, what });
    }
    add({ method: 'GET', path: sess, query: { metadata: '{"a":' }, expect: 400,
          doc: 'cannot tell', what: 'metadata broken JSON' });
    add({ method: 'GET', path: sess, query: { user_id: 'user-42', metadata: '{"plan":"pro"}' },
          expect: 200, what: 'both filters', also: res =>
              JSON.parse(res.body).data.every(x => x.user_id === 'user-42'
                                                   && x.metadata?.plan === 'pro') ? []
              : ['the filters let another session through'] });
    for (const [body, expect, what] of [
        [{ query: 'zebra', user_id: '' }, 400, 'user_id empty'],
        [{ query: 'zebra', metadata: [1] }, 400, 'metadata an array'],
        [{ query: 'zebra', mode: 'keyword', user_id: 'user-42', metadata: { plan: 'pro' } },
         200, 'user_id and metadata']]) {
        add({ method: 'POST', path: p('/search'), body, expect, what, doc: refuses });
    }

    // audio
    add({ method: 'GET', path: audio, expect: 200, what: 'the whole file', also: res =>
        res.body.equals(fs.readFileSync(AUDIO_FIXTURE)) ? [] : ['not the stored file'] });
    add({ method: 'GET', path: audio, headers: { Range: 'bytes=0-9' }, expect: 206,
          also: res => res.body.length === 10 && res.headers['content-range'] ? []
                       : ['not 10 bytes with Content-Range'] });
    add({ method: 'GET', path: audio, headers: { Range: 'bytes=0-1,4-5' }, expect: 206,
          what: 'two ranges' });
    add({ method: 'GET', path: audio, headers: { Range: 'bytes=99999999-' }, expect: 416 });
    add({ method: 'GET', path: audio, headers: { 'If-Match': '"nope"' }, expect: 412 });
    add({ method: 'GET', path: audio,
          headers: { 'If-Unmodified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' }, expect: 412 });
    add({ method: 'GET', path: audio, headers: { 'If-Modified-Since': '__LAST_MODIFIED__' },
          expect: 304 });
    add({ method: 'GET', path: audio, headers: { 'If-None-Match': '__ETAG__' }, expect: 304 });
    add({ method: 'GET', path: audio, ids: { message_id: M_NONE }, expect: 404,
          what: 'a message without audio' });
    add({ method: 'GET', path: audio, ids: { message_id: M_LOST }, expect: 404,
          what: 'its file is gone' });
    add({ method: 'GET', path: audio, ids: { message_id: UNKNOWN }, expect: 404,
          what: 'no such message' });
    add({ method: 'GET', path: audio, ids: { session_id: OTHER_S }, expect: 404,
          what: 'the message is in another session' });

    // search
    const find = (body, expect, what, doc = refuses) =>
        add({ method: 'POST', path: search, body, expect, what, doc });
    find({}, 400, 'no query');
    find({ query: null }, 400, 'null query');
    find({ query: ' \t\r\n' }, 400, 'a blank query');
    find({ query: long(2001) }, 400, 'a long query');
    find({ query: 'é'.repeat(1001) }, 400, 'a query of 2002 bytes', 'cannot tell');
    find({ query: long(2000), mode: 'keyword' }, 200, 'a query of 2000');
    find({ query: 'zebra', mode: 'fuzzy' }, 400, 'an unknown mode');
    find({ query: 'zebra', mode: null, limit: null, from: null, to: null, org_id: null,
           session_id: null, source_lang: null, target_lang: null }, 200, 'nulls');
    for (const limit of [0, 101, 1.5, '5']) {
        find({ query: 'zebra', limit }, 400, `limit ${JSON.stringify(limit)}`);
    }
    find({ query: 'zebra', limit: 100, mode: 'keyword' }, 200, 'limit 100');
    find({ query: 'zebra', from: 'yesterday' }, 400, 'from not a time');
    find({ query: 'zebra', to: '2026-02-30' }, 400, 'to not a date');
    find({ query: 'zebra', from: '2026-01-31T12:00:00+02:00', to: '2026-02-01 00:00:00.5z' },
         200, 'an offset, a space and a lower-case z');
    find({ query: 'zebra', from: '2026-02-01', to: '2026-01-31' }, 400, 'from after to',
         'cannot tell');
    find({ query: 'zebra', session_id: 's' }, 400, 'session_id malformed');
    find({ query: 'zebra', org_id: 7 }, 400, 'org_id a number');
    find({ query: 'zebra', source_lang: 'e' }, 400, 'source_lang malformed');
    find({ query: 'zebra', target_lang: 'en_GB' }, 400, 'target_lang malformed');
    find({ query: 'zebra', mode: 'keyword', session_id: S }, 200, 'the zebra is found');
    cases[cases.length - 1].also = res => {
        const hits = JSON.parse(res.body).data;
        return hits.length >= 1 && hits.every(h => h.session.id === S) ? []
               : ['the keyword search found nothing in the session'];
    };

    // retention
    const put = (body, expect, what, doc = refuses) =>
        add({ method: 'PUT', path: ret, body, expect, what, doc });
    put({}, 400, 'no retention_days');
    for (const d of [0, 3651, 1.5, '30', true]) {
        put({ retention_days: d }, 400, `retention_days ${JSON.stringify(d)}`);
    }
    put({ retention_days: 3650, org_id: null }, 200, 'the most');
    put({ retention_days: 1, apply_to_existing: false }, 200, 'the least');
    put({ retention_days: 30, apply_to_existing: 'yes' }, 400, 'apply_to_existing a string');
    put({ retention_days: 30, apply_to_existing: null }, 400, 'apply_to_existing null');
    put({ retention_days: 30, org_id: 'org' }, 400, 'org_id malformed');
    put({ retention_days: null }, 200, 'forever');
    add({ method: 'GET', path: ret, query: { org_id: 'org' }, expect: 400, doc: refuses });

    if (prefix === '/api') {
        create({ source_lang: 'en', target_lang: 'es', org_id: UNKNOWN }, 404,
               'an unknown organization', 'cannot tell');
        add({ method: 'GET', path: ret, query: { org_id: UNKNOWN }, expect: 404 });
        put({ retention_days: 30, org_id: UNKNOWN }, 404, 'an unknown organization',
            'cannot tell');
        add({ method: 'GET', path: one, ids: { session_id: OTHER_S }, expect: 200,
              what: 'every organization\'s session' });
        add({ method: 'GET', path: sess, query: { org_id: OTHER_ORG }, expect: 200,
              also: res => JSON.parse(res.body).data.every(s => s.org_id === OTHER_ORG) ? []
                           : ['the filter let another organization through'] });
    }

    if (prefix === '/v1') {
        // another organization: not visible, never 403 for an id
        for (const o of operations.filter(o => o.path.startsWith('/v1/sessions/{'))) {
            const rb = deref(o.op.requestBody);
            add({ method: o.method, path: o.path, ids: { session_id: OTHER_S },
                  body: rb ? { title: 'x' } : undefined, expect: 404,
                  what: 'another organization\'s session' });
        }
        add({ method: 'GET', path: sess, query: { org_id: OTHER_ORG }, expect: 403 });
        add({ method: 'GET', path: sess, query: { org_id: ORG }, expect: 200 });
        add({ method: 'GET', path: ret, query: { org_id: OTHER_ORG }, expect: 403 });
        create({ source_lang: 'en', target_lang: 'es', org_id: OTHER_ORG }, 403,
               'another organization', 'cannot tell');
        find({ query: 'zebra', org_id: OTHER_ORG }, 403, 'another organization',
             'cannot tell');
        put({ retention_days: 30, org_id: OTHER_ORG }, 403, 'another organization',
            'cannot tell');
        find({ query: 'zebra', mode: 'keyword', session_id: OTHER_S }, 200,
             'another organization\'s session');
        cases[cases.length - 1].also = res => JSON.parse(res.body).data.length === 0 ? []
            : ['another organization\'s messages were found'];

        // keys
        for (const o of operations.filter(o => o.path.startsWith('/v1/'))) {
            const c = { method: o.method, path: o.path };
            add({ ...c, key: null, expect: 401, what: 'no key', also: res =>
                res.headers['www-authenticate'] === 'Bearer realm="chathistory"' ? []
                : ['no key: WWW-Authenticate without an error'] });
            add({ ...c, key: null, headers: { Authorization: `Bearer ${KEY}x` },
                  expect: 401, what: 'an unknown key' });
            add({ ...c, key: null, headers: { Authorization: 'Basic dTpw' }, expect: 401,
                  what: 'not Bearer' });
            add({ ...c, key: null, headers: { 'X-API-Key': 'a key with spaces' },
                  expect: 401, what: 'a malformed key' });
        }
    }

    return cases;
}

// 405 for every method a path does not document, with its Allow
function methodCases() {
    const cases = [];
    for (const p of Object.keys(doc.paths)) {
        const allowed = documentedMethods(p);
        for (const method of METHODS.filter(m => !allowed.includes(m))) {
            cases.push({ method, path: p, expect: 405, what: 'not a method of the path',
                         also: res => sameSet((res.headers.allow ?? '').split(', '), allowed)
                                      ? [] : [`Allow: ${res.headers.allow}, documented: `
                                              + allowed.join(', ')] });
        }
    }
    return cases;
}

// /v1 over the organization's rate: 429 for every operation
function rateCases() {
    return operations.filter(o => o.path.startsWith('/v1/'))
        .map(o => ({ method: o.method, path: o.path, key: KEY_SLOW, expect: 429,
                     ids: { session_id: UNKNOWN }, what: 'over the rate' }));
}

// the key's organization deleted while the key is cached: 404 where documented
function goneCases() {
    const ret = '/v1/settings/retention';
    return [
        { method: 'POST', path: '/v1/sessions', key: KEY_GONE, expect: 404,
          body: { source_lang: 'en', target_lang: 'es' }, what: 'the organization is gone' },
        { method: 'GET', path: ret, key: KEY_GONE, expect: 404, what: 'the organization is gone' },
        { method: 'PUT', path: ret, key: KEY_GONE, expect: 404, body: { retention_days: 3 },
          what: 'the organization is gone' },
    ];
}

// HEAD for every GET: the same status, no body
function headOf(cases) {
    return cases.filter(c => c.method === 'GET' && findOp(c.path, 'HEAD'))
        .map(c => ({ ...c, method: 'HEAD', also: undefined }));
}


// ------------------------------------------------------------------ main

async function main() {
    console.log(`# ${path.relative(root, DOC_FILE)} against ${BASE.origin}`);

    checkRoutes();
    checkGeneratable();
    makeFixtures();

    // /api's PUT without org_id sets the default organization's: given back at the end
    const defaultDays = sql("SELECT coalesce(retention_days::text, 'NULL') FROM organizations"
                            + " WHERE name = 'default'");

    // the examples first (each DELETE removes a session made for it)
    const examples = exampleCases();
    for (const c of [...examples, ...headOf(examples)]) {
        if (c.fail) {
            ok(false, c.fail);
            continue;
        }
        if (c.ids.fresh) {
            c.ids = { session_id: freshSession() };
        }
        await run(c);
    }

    // the validators of the stored file, for If-None-Match and If-Modified-Since
    const a = await send({ method: 'GET',
                           url: `/api/sessions/${S}/messages/${M_AUDIO}/audio` });
    const validators = { __ETAG__: a.headers.etag, __LAST_MODIFIED__: a.headers['last-modified'] };

    const cases = [...errorCases('/api'), ...errorCases('/v1'), ...methodCases()];
    for (const c of cases) {
        for (const [name, value] of Object.entries(c.headers ?? {})) {
            if (value in validators) {
                c.headers = { ...c.headers, [name]: validators[value] };
            }
        }
    }
    for (const c of [...cases, ...headOf(cases)]) {
        if (c.method === 'DELETE' && !c.ids?.session_id) {
            c.ids = { ...c.ids, session_id: freshSession() };
        }
        await run(c);
    }

    // 429: the slow organization's first request passes, the rest are over the rate
    await send({ method: 'GET', url: '/v1/sessions',
                 headers: { Authorization: `Bearer ${KEY_SLOW}` } });
    for (const c of rateCases()) {
        await run(c);
    }

    // the gone organization: its key is cached by a first request, then it goes
    const g = await send({ method: 'GET', url: '/v1/settings/retention',
                           headers: { Authorization: `Bearer ${KEY_GONE}` } });
    ok(g.status === 200, 'the key of the organization about to go works', `${g.status}`);
    sql(`DELETE FROM organizations WHERE id = '${GONE_ORG}'`);
    const gone = goneCases();
    for (const c of [...gone, ...headOf(gone)]) {
        await run(c);
    }

    // every documented status of every operation was seen
    for (const o of operations) {
        const got = seen.get(`${o.method} ${o.path}`) ?? new Set();
        for (const status of Object.keys(o.op.responses)) {
            if (NOT_PROVOKED.has(status)) {
                continue;
            }
            ok(got.has(status), `${o.method} ${o.path}: documented ${status} was seen`,
               `seen: ${[...got].sort().join(', ')}`);
        }
    }

    sql(`UPDATE organizations SET retention_days = ${defaultDays} WHERE name = 'default';
         DELETE FROM sessions WHERE id = ANY ('{${created.join(',')}}'::uuid[]);
         DELETE FROM organizations WHERE name LIKE 'openapi-%'`);

    console.log(`1..${testNo}`);
    console.log(`# ${testNo - failures} passed, ${failures} failed`);
    process.exitCode = failures ? 1 : 0;
}

main().catch(e => {
    console.log(`not ok ${++testNo} - the checker ran to the end`);
    console.log(`# ${e.stack}`);
    console.log(`1..${testNo}`);
    process.exitCode = 1;
});
