// Synthetic CARIN Blue Button (C4BB) data for the demo FHIR server.
// Generated at start from a fixed seed, so every run serves the same
// members, coverages and claims.

import { memberIds } from './clients.js';

const C4BB = 'http://hl7.org/fhir/us/carin-bb/StructureDefinition';
const C4BB_CS = 'http://hl7.org/fhir/us/carin-bb/CodeSystem';
const THO = 'http://terminology.hl7.org/CodeSystem';
const PAYER_SYSTEM = 'https://payer.example/fhir/sid';
const LAST_UPDATED = '2025-06-30T12:00:00Z';

// mulberry32: small, fast and good enough for fake data
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const GIVEN_F = ['Maria', 'Linda', 'Aisha', 'Jennifer', 'Mei', 'Sofia', 'Emily', 'Grace', 'Priya', 'Rosa', 'Hannah', 'Keisha'];
const GIVEN_M = ['James', 'Robert', 'Carlos', 'Michael', 'David', 'Wei', 'Daniel', 'Andre', 'Samuel', 'Luis', 'Thomas', 'Omar'];
const FAMILY = ['Smith', 'Johnson', 'Garcia', 'Nguyen', 'Williams', 'Brown', 'Martinez', 'Davis', 'Lopez', 'Wilson',
  'Anderson', 'Patel', 'Kim', 'Jackson', 'Lee', 'Thompson', 'Rivera', 'Clark', 'Lewis', 'Walker'];
const STREETS = ['Main St', 'Oak Ave', 'Maple Dr', 'Cedar Ln', 'Elm St', 'Park Blvd', 'Lakeview Rd', 'Hillcrest Ave'];
const PLACES = [
  ['Hartford', 'CT', '06103'], ['Columbus', 'OH', '43215'], ['Austin', 'TX', '78701'], ['Denver', 'CO', '80202'],
  ['Raleigh', 'NC', '27601'], ['Phoenix', 'AZ', '85004'], ['Tampa', 'FL', '33602'], ['Portland', 'OR', '97204'],
  ['Madison', 'WI', '53703'], ['Richmond', 'VA', '23219'], ['Albany', 'NY', '12207'], ['Boise', 'ID', '83702'],
  ['San Juan', 'PR', '00901'], ['Omaha', 'NE', '68102'],
];
const PLANS = [
  ['PLN-GOLD-PPO', 'Demo Gold PPO'], ['PLN-SILVER-HMO', 'Demo Silver HMO'], ['PLN-BRONZE-HDHP', 'Demo Bronze HDHP'],
];
const GROUPS = [['GRP-10420', 'Acme Manufacturing'], ['GRP-22017', 'City of Springfield'], ['GRP-00001', 'Individual Market']];

const DIAGNOSES = [
  ['J06.9', 'Acute upper respiratory infection, unspecified'], ['E11.9', 'Type 2 diabetes mellitus without complications'],
  ['I10', 'Essential (primary) hypertension'], ['M54.50', 'Low back pain, unspecified'],
  ['Z00.00', 'Encounter for general adult medical examination without abnormal findings'],
  ['K21.9', 'Gastro-esophageal reflux disease without esophagitis'], ['J45.909', 'Unspecified asthma, uncomplicated'],
];
const CPT = [
  ['99213', 'Office or other outpatient visit, established patient, low MDM'], ['99214', 'Office or other outpatient visit, established patient, moderate MDM'],
  ['99396', 'Periodic comprehensive preventive medicine, 40-64 years'], ['80053', 'Comprehensive metabolic panel'],
  ['85025', 'Complete blood count with automated differential'], ['97110', 'Therapeutic exercises'], ['71046', 'Radiologic examination, chest; 2 views'],
];
const NDC = [
  ['00093-7212-01', 'Metformin HCl 500 MG Oral Tablet'], ['00378-0018-01', 'Lisinopril 10 MG Oral Tablet'],
  ['00071-0155-23', 'Atorvastatin 10 MG Oral Tablet'], ['59762-3304-1', 'Omeprazole 20 MG Delayed Release Capsule'],
  ['00173-0682-20', 'Albuterol 90 MCG/ACTUAT Metered Dose Inhaler'], ['00781-1506-01', 'Amoxicillin 500 MG Oral Capsule'],
];
const REVENUE = [['0120', 'Room & Board - Semi-Private'], ['0250', 'Pharmacy - General'], ['0300', 'Laboratory - General'],
  ['0450', 'Emergency Room - General'], ['0360', 'Operating Room Services - General']];
const DRG = [['392', 'Esophagitis, gastroenteritis and misc digestive disorders without MCC'],
  ['194', 'Simple pneumonia and pleurisy with CC'], ['871', 'Septicemia without MV >96 hours with MCC']];

const ORGANIZATIONS = [
  { id: 'org-payer', name: 'Demo Health Plan', type: 'pay', npi: null, city: 'Hartford', state: 'CT' },
  { id: 'org-hosp-1', name: 'Riverside General Hospital', type: 'prov', npi: '1871234560', city: 'Columbus', state: 'OH' },
  { id: 'org-hosp-2', name: 'St. Anne Medical Center', type: 'prov', npi: '1982345671', city: 'Austin', state: 'TX' },
  { id: 'org-hosp-3', name: 'Mountain View Regional', type: 'prov', npi: '1093456782', city: 'Denver', state: 'CO' },
  { id: 'org-pharm-1', name: 'Corner Drug #114', type: 'prov', npi: '1104567893', city: 'Raleigh', state: 'NC' },
  { id: 'org-pharm-2', name: 'HealthMart Pharmacy 2051', type: 'prov', npi: '1215678904', city: 'Tampa', state: 'FL' },
  { id: 'org-clinic-1', name: 'Lakeside Family Practice', type: 'prov', npi: '1326789015', city: 'Madison', state: 'WI' },
];
const PRACTITIONERS = [
  ['pr-001', 'Alvarez', 'Elena', '1437890126'], ['pr-002', 'Okafor', 'Chidi', '1548901237'],
  ['pr-003', 'Schmidt', 'Hanna', '1659012348'], ['pr-004', 'Tanaka', 'Ken', '1760123459'],
  ['pr-005', 'Brooks', 'Naomi', '1871234561'], ['pr-006', 'Haddad', 'Sami', '1982345672'],
];

const coding = (system, code, display) => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });
const money = (value) => ({ value: Math.round(value * 100) / 100, currency: 'USD' });
const ref = (type, id, display) => ({ reference: `${type}/${id}`, ...(display ? { display } : {}) });
const isoDate = (d) => d.toISOString().slice(0, 10);

function organization(o) {
  return {
    resourceType: 'Organization',
    id: o.id,
    meta: { lastUpdated: LAST_UPDATED, profile: [`${C4BB}/C4BB-Organization`] },
    identifier: o.npi
      ? [{ type: coding(`${THO}/v2-0203`, 'NPI'), system: 'http://hl7.org/fhir/sid/us-npi', value: o.npi }]
      : [{ type: coding(`${THO}/v2-0203`, 'TAX'), system: 'urn:oid:2.16.840.1.113883.4.4', value: '06-1234567' }],
    active: true,
    type: [coding(`${THO}/organization-type`, o.type)],
    name: o.name,
    address: [{ city: o.city, state: o.state, country: 'US' }],
  };
}

function practitioner([id, family, given, npi]) {
  return {
    resourceType: 'Practitioner',
    id,
    meta: { lastUpdated: LAST_UPDATED, profile: [`${C4BB}/C4BB-Practitioner`] },
    identifier: [{ type: coding(`${THO}/v2-0203`, 'NPI'), system: 'http://hl7.org/fhir/sid/us-npi', value: npi }],
    name: [{ family, given: [given], prefix: ['Dr.'] }],
  };
}

// Line adjudication and claim totals with C4BB's categories.
function amounts(rand, submitted, inNetwork) {
  const allowed = submitted * (inNetwork ? 0.55 + rand() * 0.3 : 0.8 + rand() * 0.2);
  const deductible = rand() < 0.4 ? Math.min(allowed, 50 + Math.floor(rand() * 200)) : 0;
  const copay = rand() < 0.5 ? [10, 20, 30, 40][Math.floor(rand() * 4)] : 0;
  const paid = Math.max(0, allowed - deductible - copay);
  const adj = (code, value) => ({ category: coding(`${THO}/adjudication`, code), amount: money(value) });
  const c4bb = (code, value) => ({ category: coding(`${C4BB_CS}/C4BBAdjudication`, code), amount: money(value) });
  const lines = [
    adj('submitted', submitted), adj('eligible', allowed), adj('deductible', deductible), adj('copay', copay),
    adj('benefit', paid), c4bb('paidtoprovider', paid), c4bb('paidbypatient', deductible + copay),
  ];
  return { lines, paid, submitted };
}

function benefitStatus(inNetwork) {
  return {
    category: coding(`${C4BB_CS}/C4BBAdjudicationDiscriminator`, 'benefitpaymentstatus'),
    reason: coding(`${C4BB_CS}/C4BBPayerBenefitPaymentStatus`, inNetwork ? 'innetwork' : 'outofnetwork'),
  };
}

function eob(rand, memberId, seq, kind, coverageId) {
  const n = memberId.slice(2);
  const start = new Date(Date.UTC(2024, 0, 1) + Math.floor(rand() * 540) * 86400000);
  const days = kind === 'inpatient' ? 2 + Math.floor(rand() * 5) : 0;
  const end = new Date(start.getTime() + days * 86400000);
  const received = new Date(end.getTime() + (3 + Math.floor(rand() * 10)) * 86400000);
  const paidOn = new Date(received.getTime() + (5 + Math.floor(rand() * 20)) * 86400000);
  const inNetwork = rand() < 0.85;
  const dx = DIAGNOSES[Math.floor(rand() * DIAGNOSES.length)];
  const supportingInfo = [{
    sequence: 1,
    category: coding(`${C4BB_CS}/C4BBSupportingInfoType`, 'clmrecvddate'),
    timingDate: isoDate(received),
  }];

  let profile, type, subType, provider, items, careTeam;
  if (kind === 'professional') {
    const pr = PRACTITIONERS[Math.floor(rand() * PRACTITIONERS.length)];
    profile = 'C4BB-ExplanationOfBenefit-Professional-NonClinician';
    type = coding(`${THO}/claim-type`, 'professional', 'Professional');
    provider = ref('Practitioner', pr[0]);
    careTeam = [{ sequence: 1, provider: ref('Practitioner', pr[0]), role: coding(`${C4BB_CS}/C4BBClaimCareTeamRole`, 'performing') }];
    items = Array.from({ length: 1 + Math.floor(rand() * 3) }, (_, i) => {
      const cpt = CPT[Math.floor(rand() * CPT.length)];
      const a = amounts(rand, 80 + Math.floor(rand() * 320), inNetwork);
      return {
        sequence: i + 1,
        productOrService: coding('http://www.ama-assn.org/go/cpt', cpt[0], cpt[1]),
        servicedDate: isoDate(start),
        locationCodeableConcept: coding('https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set', '11', 'Office'),
        quantity: { value: 1 },
        adjudication: a.lines,
        _amounts: a,
      };
    });
  } else if (kind === 'pharmacy') {
    const pharm = ['org-pharm-1', 'org-pharm-2'][Math.floor(rand() * 2)];
    const drug = NDC[Math.floor(rand() * NDC.length)];
    const daysSupply = [30, 30, 90][Math.floor(rand() * 3)];
    profile = 'C4BB-ExplanationOfBenefit-Pharmacy';
    type = coding(`${THO}/claim-type`, 'pharmacy', 'Pharmacy');
    provider = ref('Organization', pharm);
    supportingInfo.push(
      { sequence: 2, category: coding(`${C4BB_CS}/C4BBSupportingInfoType`, 'dayssupply'), valueQuantity: { value: daysSupply } },
      { sequence: 3, category: coding(`${C4BB_CS}/C4BBSupportingInfoType`, 'refillnum'), valueQuantity: { value: Math.floor(rand() * 4) } },
    );
    const a = amounts(rand, 12 + Math.floor(rand() * 180), true);
    items = [{
      sequence: 1,
      productOrService: coding('http://hl7.org/fhir/sid/ndc', drug[0], drug[1]),
      servicedDate: isoDate(start),
      quantity: { value: daysSupply },
      adjudication: a.lines,
      _amounts: a,
    }];
  } else {
    const hosp = ['org-hosp-1', 'org-hosp-2', 'org-hosp-3'][Math.floor(rand() * 3)];
    const drg = DRG[Math.floor(rand() * DRG.length)];
    profile = 'C4BB-ExplanationOfBenefit-Inpatient-Institutional';
    type = coding(`${THO}/claim-type`, 'institutional', 'Institutional');
    subType = coding(`${C4BB_CS}/C4BBInstitutionalClaimSubType`, 'inpatient', 'Inpatient');
    provider = ref('Organization', hosp);
    supportingInfo.push(
      { sequence: 2, category: coding(`${C4BB_CS}/C4BBSupportingInfoType`, 'admissionperiod'), timingPeriod: { start: isoDate(start), end: isoDate(end) } },
      { sequence: 3, category: coding(`${C4BB_CS}/C4BBSupportingInfoType`, 'drg'), code: coding('https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/AcuteInpatientPPS/MS-DRG-Classifications-and-Software', drg[0], drg[1]) },
    );
    items = REVENUE.slice(0, 2 + Math.floor(rand() * 3)).map((rev, i) => {
      const a = amounts(rand, 400 + Math.floor(rand() * 6000), inNetwork);
      return {
        sequence: i + 1,
        revenue: coding('https://www.nubc.org/CodeSystem/RevenueCodes', rev[0], rev[1]),
        productOrService: coding(`${THO}/data-absent-reason`, 'not-applicable'),
        servicedPeriod: { start: isoDate(start), end: isoDate(end) },
        quantity: { value: rev[0] === '0120' ? days : 1 },
        adjudication: a.lines,
        _amounts: a,
      };
    });
  }

  const submitted = items.reduce((s, it) => s + it._amounts.submitted, 0);
  const paid = items.reduce((s, it) => s + it._amounts.paid, 0);
  for (const it of items) delete it._amounts;

  return {
    resourceType: 'ExplanationOfBenefit',
    id: `eob-${n}-${seq}`,
    meta: { lastUpdated: `${isoDate(paidOn)}T09:30:00Z`, profile: [`${C4BB}/${profile}`] },
    identifier: [{
      type: coding(`${C4BB_CS}/C4BBIdentifierType`, 'uc', 'Unique Claim ID'),
      system: `${PAYER_SYSTEM}/claim-id`,
      value: `CLM${n}${String(seq).padStart(2, '0')}${Math.floor(rand() * 1e6).toString().padStart(6, '0')}`,
    }],
    status: 'active',
    type,
    ...(subType ? { subType } : {}),
    use: 'claim',
    patient: ref('Patient', memberId),
    billablePeriod: { start: isoDate(start), end: isoDate(end) },
    created: `${isoDate(received)}T00:00:00Z`,
    insurer: ref('Organization', 'org-payer', 'Demo Health Plan'),
    provider,
    outcome: 'complete',
    ...(careTeam ? { careTeam } : {}),
    supportingInfo,
    diagnosis: kind === 'pharmacy' ? undefined : [{
      sequence: 1,
      diagnosisCodeableConcept: coding('http://hl7.org/fhir/sid/icd-10-cm', dx[0], dx[1]),
      type: [coding(`${C4BB_CS}/C4BBClaimDiagnosisType`, 'principal')],
    }],
    insurance: [{ focal: true, coverage: ref('Coverage', coverageId) }],
    item: items,
    adjudication: [benefitStatus(inNetwork)],
    total: [
      { category: coding(`${THO}/adjudication`, 'submitted'), amount: money(submitted) },
      { category: coding(`${THO}/adjudication`, 'benefit'), amount: money(paid) },
    ],
    payment: { type: coding(`${THO}/ex-paymenttype`, 'complete'), date: isoDate(paidOn), amount: money(paid) },
  };
}

function patient(rand, memberId) {
  const female = rand() < 0.52;
  const given = (female ? GIVEN_F : GIVEN_M)[Math.floor(rand() * 12)];
  const middle = (female ? GIVEN_F : GIVEN_M)[Math.floor(rand() * 12)].slice(0, 1);
  const family = FAMILY[Math.floor(rand() * FAMILY.length)];
  const birth = new Date(Date.UTC(1940, 0, 1) + Math.floor(rand() * 365 * 62) * 86400000);
  const [city, state, zip] = PLACES[Math.floor(rand() * PLACES.length)];
  return {
    resourceType: 'Patient',
    id: memberId,
    meta: { lastUpdated: LAST_UPDATED, profile: [`${C4BB}/C4BB-Patient`] },
    identifier: [{
      type: coding(`${THO}/v2-0203`, 'MB', 'Member Number'),
      system: `${PAYER_SYSTEM}/member-id`,
      value: memberId,
    }],
    active: true,
    name: [{ use: 'official', family, given: [given, middle] }],
    telecom: [{ system: 'phone', value: `555-01${String(Math.floor(rand() * 100)).padStart(2, '0')}`, use: 'home' }],
    gender: female ? 'female' : 'male',
    birthDate: isoDate(birth),
    address: [{
      use: 'home',
      line: [`${100 + Math.floor(rand() * 9800)} ${STREETS[Math.floor(rand() * STREETS.length)]}`],
      city, state, postalCode: zip, country: 'US',
    }],
  };
}

function coverage(rand, memberId) {
  const n = memberId.slice(2);
  const plan = PLANS[Math.floor(rand() * PLANS.length)];
  const group = GROUPS[Math.floor(rand() * GROUPS.length)];
  return {
    resourceType: 'Coverage',
    id: `cov-${n}`,
    meta: { lastUpdated: LAST_UPDATED, profile: [`${C4BB}/C4BB-Coverage`] },
    identifier: [{ type: coding(`${THO}/v2-0203`, 'MB'), system: `${PAYER_SYSTEM}/member-id`, value: memberId }],
    status: 'active',
    type: coding('http://terminology.hl7.org/CodeSystem/v3-ActCode', 'HIP', 'health insurance plan policy'),
    subscriberId: `SUB${n}${Math.floor(rand() * 1000).toString().padStart(3, '0')}`,
    beneficiary: ref('Patient', memberId),
    relationship: coding(`${THO}/subscriber-relationship`, 'self', 'Self'),
    period: { start: '2024-01-01', end: '2025-12-31' },
    payor: [ref('Organization', 'org-payer', 'Demo Health Plan')],
    class: [
      { type: coding(`${THO}/coverage-class`, 'group', 'Group'), value: group[0], name: group[1] },
      { type: coding(`${THO}/coverage-class`, 'plan', 'Plan'), value: plan[0], name: plan[1] },
    ],
  };
}

// Returns { byType: Map<type, Map<id, resource>>, members: Map<memberId, {...ids}> }
export function generate(seed = 20250630) {
  const rand = prng(seed);
  const byType = new Map(['Patient', 'Coverage', 'ExplanationOfBenefit', 'Organization', 'Practitioner'].map((t) => [t, new Map()]));
  const put = (r) => byType.get(r.resourceType).set(r.id, r);
  ORGANIZATIONS.map(organization).forEach(put);
  PRACTITIONERS.map(practitioner).forEach(put);

  const kinds = ['professional', 'professional', 'pharmacy', 'pharmacy', 'professional', 'inpatient'];
  for (const id of memberIds()) {
    const p = patient(rand, id);
    const cov = coverage(rand, id);
    put(p);
    put(cov);
    const count = 2 + Math.floor(rand() * 5); // 2..6 claims
    for (let i = 1; i <= count; i++) {
      // every member gets at least one professional and one pharmacy claim
      const kind = ['professional', 'pharmacy'][i - 1] ?? kinds[Math.floor(rand() * kinds.length)];
      put(eob(rand, id, i, kind, cov.id));
    }
  }
  return byType;
}

// The member a resource belongs to, or null for shared ones.
export function ownerOf(resource) {
  switch (resource.resourceType) {
    case 'Patient': return resource.id;
    case 'Coverage': return resource.beneficiary.reference.split('/')[1];
    case 'ExplanationOfBenefit': return resource.patient.reference.split('/')[1];
    default: return null;
  }
}
