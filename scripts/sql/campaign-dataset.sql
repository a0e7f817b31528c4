-- Synthetic recipients for the campaign benchmark (issue #8): :customers customers of one
-- partner who may all be emailed, written straight into identity's tables (customers, the
-- consent types `gdpr` (data processing) and `newsletter` (marketing by email), both granted
-- by everyone) and into segmentation's customer_features (the contact details an audience
-- export reads). Customer i (1-based) has id md5(partner || '-' || i)::uuid, as in
-- segmentation-dataset.sql.
--
-- psql -v partner=<uuid> -v customers=1000000 -f scripts/sql/campaign-dataset.sql
\set ON_ERROR_STOP on
SET synchronous_commit TO off;

CREATE TEMP TABLE gen AS
SELECT i,
       md5(:'partner' || '-' || i)::uuid AS customer_id,
       'Customer' || i AS first_name,
       'c' || i || '@example.com' AS email
FROM generate_series(1::bigint, :customers) AS i;

INSERT INTO identity.customers
  (id, partner_id, first_name, last_name, email, phone, birth_date, gender, language_code, city,
   country_code, properties, state, created_at, updated_at, street, postal_code,
   contact_source_ids, interest_ids, block_reason)
SELECT customer_id, :'partner'::uuid, first_name, '', email, '', '', '', '', 'Praha', 'CZ',
       '{}'::json, 'active', now(), now(), '', '', '[]'::json, '[]'::json, ''
FROM gen;

INSERT INTO identity.consent_types
  (id, partner_id, code, display_name, purpose, channels, text, version, validity_days, active,
   revision, created_at, updated_at)
VALUES (md5(:'partner' || '-gdpr')::uuid, :'partner'::uuid, 'gdpr', 'Personal data',
        'data_processing', '[]'::json, 'We may process your data.', 1, 0, true, 1, now(), now()),
       (md5(:'partner' || '-newsletter')::uuid, :'partner'::uuid, 'newsletter', 'Newsletter',
        'marketing', '["email"]'::json, 'News by email.', 1, 0, true, 1, now(), now());

INSERT INTO identity.consents
  (partner_id, customer_id, consent_type_id, state, text_version, source, changed_at, expires_at)
SELECT :'partner'::uuid, customer_id, t.id, 'granted', 1, 'bench', now(), NULL
FROM gen CROSS JOIN (VALUES (md5(:'partner' || '-gdpr')::uuid),
                            (md5(:'partner' || '-newsletter')::uuid)) AS t(id);

INSERT INTO segmentation.customer_features
  (partner_id, customer_id, attributes, properties, purchase_count, total_spent_minor,
   last_purchase_at, updated_at, criteria_facts, activity, contact_source_ids, interest_ids)
SELECT :'partner'::uuid, customer_id,
       json_build_object('first_name', first_name, 'email', email, 'city', 'Praha'),
       '{}'::json, 0, 0, NULL, now(), '{}'::jsonb, '{}'::jsonb, '[]'::jsonb, '[]'::jsonb
FROM gen;

ANALYZE identity.customers;
ANALYZE identity.consents;
ANALYZE segmentation.customer_features;
