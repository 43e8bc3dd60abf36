// fhir-kit-client (npm, unmodified) against the gateway: node fhir_kit.js BASE_URL API_KEY FAMILY
// Prints one JSON line of what each interaction answered; any error exits non-zero with the server's answer.
import { Client, RESPONSE_KEY } from 'fhir-kit-client';

const [baseUrl, apiKey, family] = process.argv.slice(2);
const client = new Client({ baseUrl, customHeaders: { 'X-API-Key': apiKey } });
const MRN = 'http://hospital.smarthealthit.org';
const patient = (mrn, given = 'Ahmad') => ({
  resourceType: 'Patient',
  identifier: [{ system: MRN, value: mrn }],
  name: [{ family, given: [given] }],
  gender: 'male',
  birthDate: '1961-04-17',
});
const status = (result) => result[RESPONSE_KEY].status;

async function main() {
  const report = {};
  const created = await client.create({ resourceType: 'Patient', body: patient(`${family}-1`) });
  report.create = status(created);
  const read = await client.read({ resourceType: 'Patient', id: created.id });
  report.read = read.meta.versionId;
  const updated = await client.update({ resourceType: 'Patient', id: created.id, body: { ...read, gender: 'female' } });
  report.update = updated.meta.versionId;

  const ifNoneExist = { headers: { 'If-None-Exist': `identifier=${MRN}|${family}-1` } };
  const again = await client.create({ resourceType: 'Patient', body: patient(`${family}-1`, 'Other'), options: ifNoneExist });
  report.conditionalCreate = again.id === created.id && status(again) === 200 ? 'same id' : `new ${again.id}`;

  for (let i = 2; i <= 7; i += 1) await client.create({ resourceType: 'Patient', body: patient(`${family}-${i}`) });
  let page = await client.search({ resourceType: 'Patient', searchParams: { family, _count: 3 } });
  const seen = new Set();
  let pages = 0;
  while (page) {
    pages += 1;
    (page.entry || []).forEach((e) => seen.add(e.resource.id));
    page = await client.nextPage({ bundle: page });
  }
  report.searchPages = pages;
  report.searchMatches = seen.size;

  const history = await client.history({ resourceType: 'Patient', id: created.id });
  report.history = history.entry.length;
  const everything = await client.operation({ name: 'everything', resourceType: 'Patient', id: created.id, method: 'GET' });
  report.everything = everything.entry.length;

  const tx = await client.transaction({
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:6a0e6d2c-3f49-4d6b-9a3e-0c8d2f1b7e01', resource: patient(`${family}-tx`), request: { method: 'POST', url: 'Patient' } },
        {
          resource: {
            resourceType: 'Encounter',
            status: 'finished',
            class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
            subject: { reference: 'urn:uuid:6a0e6d2c-3f49-4d6b-9a3e-0c8d2f1b7e01' },
          },
          request: { method: 'POST', url: 'Encounter' },
        },
      ],
    },
  });
  report.transaction = tx.entry.map((e) => e.response.status.split(' ')[0]);

  await client.delete({ resourceType: 'Patient', id: created.id });
  try {
    await client.read({ resourceType: 'Patient', id: created.id });
    report.delete = 'still readable';
  } catch (error) {
    report.delete = error.response.status;
  }
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error.message, JSON.stringify(error.response ? error.response.data : null));
  process.exit(1);
});
