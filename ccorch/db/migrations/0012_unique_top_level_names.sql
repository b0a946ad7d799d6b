-- Two top-level topics (org units, KB categories) of the same name were allowed: a NULL
-- parent made the pair distinct. Names are now unique among siblings, at the top too.
ALTER TABLE topics DROP CONSTRAINT topics_parent_id_name_key;
ALTER TABLE topics ADD CONSTRAINT topics_parent_id_name_key UNIQUE NULLS NOT DISTINCT (parent_id, name);
ALTER TABLE org_units DROP CONSTRAINT org_units_parent_id_name_key;
ALTER TABLE org_units ADD CONSTRAINT org_units_parent_id_name_key UNIQUE NULLS NOT DISTINCT (parent_id, name);
ALTER TABLE kb_categories DROP CONSTRAINT kb_categories_parent_id_name_key;
ALTER TABLE kb_categories ADD CONSTRAINT kb_categories_parent_id_name_key UNIQUE NULLS NOT DISTINCT (parent_id, name);
