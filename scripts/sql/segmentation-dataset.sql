-- Synthetic segmentation dataset for one partner (issue #7's benchmarks): :customers customer
-- feature rows and :purchases purchases spread uniformly over the 730 days before now, written
-- straight into the segmentation service's tables in the form its projection writes them
-- (attributes, activity and the criteria search form `criteria_facts`; see
-- services/segmentation/src/domain/mod.rs `Activity::facts` and `Features::search_facts`).
--
-- psql -v partner=<uuid> -v customers=1000000 -v purchases=10000000 -v schema=segmentation \
--      -f scripts/sql/segmentation-dataset.sql
--
-- Customer i (1-based) has id md5(partner || '-' || i)::uuid, so benchmarks can pick customers
-- without reading them back. Shares (independent, by i):
--   marketing consent for email 70%, for SMS 40% (each its own consent type, channels set);
--   data processing consent 90%; hard-bounced email 2%; 1..7 soft bounces 5%;
--   city one of 10. Purchases: customer uniform, 100..50,000 minor units, business unit one of
--   20, product group one of 50; 1% of purchases returned in full.
\set ON_ERROR_STOP on
SET search_path TO :"schema";
SET synchronous_commit TO off;

CREATE TEMP TABLE gen_customers AS
SELECT i,
       md5(:'partner' || '-' || i)::uuid AS customer_id,
       (i * 7919 % 100) < 70 AS email_ok,
       (i * 104729 % 100) < 40 AS sms_ok,
       (i * 1299709 % 100) < 90 AS dp_ok,
       (i * 15485863 % 100) < 2 AS hard,
       CASE WHEN (i * 32452843 % 100) BETWEEN 2 AND 6 THEN 1 + (i % 7) ELSE 0 END AS soft,
       (ARRAY['Praha','Brno','Ostrava','Plzeň','Liberec','Olomouc','Zlín','Kladno','Most','Opava'])[1 + i % 10] AS city
FROM generate_series(1::bigint, :customers) AS i;

INSERT INTO customer_purchases
  (partner_id, purchase_id, customer_id, purchased_at, net_amount_minor, returned_amount_minor,
   business_unit_id)
SELECT :'partner'::uuid,
       gen_random_uuid(),
       md5(:'partner' || '-' || (1 + floor(random() * :customers)::bigint))::uuid,
       now() - random() * interval '730 days',
       100 + floor(random() * 49901)::bigint,
       0,
       'bu-' || (1 + floor(random() * 20)::int)
FROM generate_series(1, :purchases);

UPDATE customer_purchases SET returned_amount_minor = net_amount_minor
WHERE partner_id = :'partner'::uuid AND abs(hashtext(purchase_id::text)) % 100 = 0;

CREATE TEMP TABLE gen_totals AS
SELECT customer_id,
       count(*) FILTER (WHERE returned_amount_minor < net_amount_minor) AS n,
       sum(net_amount_minor - returned_amount_minor) AS spent,
       max(purchased_at) AS last_at
FROM customer_purchases WHERE partner_id = :'partner'::uuid
GROUP BY customer_id;

INSERT INTO customer_features
  (partner_id, customer_id, attributes, properties, purchase_count, total_spent_minor,
   last_purchase_at, updated_at, criteria_facts, activity)
SELECT :'partner'::uuid, c.customer_id,
       json_build_object('first_name', 'Customer', 'last_name', 'No' || c.i,
                         'email', 'customer' || c.i || '@example.com',
                         'phone', '+420' || lpad((600000000 + c.i)::text, 9, '0'),
                         'birth_date', (date '1950-01-01' + (c.i % 20000)::int)::text,
                         'city', c.city),
       '{}'::json,
       coalesce(t.n, 0), coalesce(t.spent, 0), t.last_at, now(),
       jsonb_build_object(
         'customer.first_name', jsonb_build_object('t', 'customer'),
         'customer.last_name', jsonb_build_object('t', 'no' || c.i),
         'customer.email', jsonb_build_object('t', 'customer' || c.i || '@example.com'),
         'customer.phone', jsonb_build_object('t', '+420' || lpad((600000000 + c.i)::text, 9, '0'),
                                              'i', ('420' || lpad((600000000 + c.i)::text, 9, '0'))::bigint),
         'customer.birth_date', jsonb_build_object('t', (date '1950-01-01' + (c.i % 20000)::int)::text),
         'customer.city', jsonb_build_object('t', lower(c.city)),
         'consents.marketing_email', jsonb_build_object('t', CASE WHEN c.email_ok THEN 'granted' ELSE 'withdrawn' END),
         'consents.marketing_sms', jsonb_build_object('t', CASE WHEN c.sms_ok THEN 'granted' ELSE 'withdrawn' END),
         'consents.data_processing', jsonb_build_object('t', CASE WHEN c.dp_ok THEN 'granted' ELSE 'withdrawn' END),
         'features.marketing_consent_email', jsonb_build_object('t', c.email_ok::text, 'b', c.email_ok),
         'features.marketing_consent_sms', jsonb_build_object('t', c.sms_ok::text, 'b', c.sms_ok),
         'features.marketing_consent_push', jsonb_build_object('t', 'false', 'b', false),
         'features.marketing_consent_viber', jsonb_build_object('t', 'false', 'b', false),
         'features.data_processing_consent', jsonb_build_object('t', c.dp_ok::text, 'b', c.dp_ok),
         'features.email_hard_bounced', jsonb_build_object('t', c.hard::text, 'b', c.hard),
         'features.email_soft_bounce_count', jsonb_build_object('t', c.soft::text, 'i', c.soft),
         'messages.delivered.count', '{"t": "0", "i": 0}'::jsonb,
         'messages.opened.count', '{"t": "0", "i": 0}'::jsonb,
         'messages.clicked.count', '{"t": "0", "i": 0}'::jsonb,
         'messages.hard_bounced.count', '{"t": "0", "i": 0}'::jsonb,
         'messages.soft_bounced.count', '{"t": "0", "i": 0}'::jsonb,
         'messages.unsubscribed.count', '{"t": "0", "i": 0}'::jsonb),
       jsonb_build_object(
         'consents', jsonb_build_object(
           'marketing_email', jsonb_build_object('value', jsonb_build_object(
              'state', CASE WHEN c.email_ok THEN 'granted' ELSE 'withdrawn' END,
              'purpose', 'marketing', 'channels', jsonb_build_array('email')), 'sequence', 1),
           'marketing_sms', jsonb_build_object('value', jsonb_build_object(
              'state', CASE WHEN c.sms_ok THEN 'granted' ELSE 'withdrawn' END,
              'purpose', 'marketing', 'channels', jsonb_build_array('sms')), 'sequence', 2),
           'data_processing', jsonb_build_object('value', jsonb_build_object(
              'state', CASE WHEN c.dp_ok THEN 'granted' ELSE 'withdrawn' END,
              'purpose', 'data_processing', 'channels', jsonb_build_array()), 'sequence', 3)),
         'email_bounce', jsonb_build_object('value', jsonb_build_object(
              'hard_bounced', c.hard, 'soft_bounce_count', c.soft), 'sequence', 4),
         'points', '{}'::jsonb, 'events', '{}'::jsonb)
FROM gen_customers c LEFT JOIN gen_totals t USING (customer_id);

-- A settled database, as production's is once autovacuum has visited the tables: the
-- visibility map set (the purchase windows are then index-only scans of
-- customer_purchases_time), statistics fresh, the generation's writes checkpointed.
VACUUM (ANALYZE) customer_features;
VACUUM (ANALYZE) customer_purchases;
CHECKPOINT;
