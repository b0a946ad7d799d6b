-- Knowledge base: categories, articles with tags and every version kept, full-text search
-- in Russian and English (PostgreSQL's own configurations) and trigram search for scripts
-- without a configuration (Chinese, and Ukrainian, which PostgreSQL does not stem).

CREATE TABLE kb_categories (
    id          bigserial PRIMARY KEY,
    parent_id   bigint REFERENCES kb_categories(id),
    name        text NOT NULL,
    UNIQUE (parent_id, name)
);

-- The text search configuration of an article's language ('simple' where none exists).
CREATE FUNCTION kb_config(lang text) RETURNS regconfig LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE lang WHEN 'ru' THEN 'russian'::regconfig WHEN 'en' THEN 'english'::regconfig
                     ELSE 'simple'::regconfig END
$$;

CREATE TABLE kb_articles (
    id              bigserial PRIMARY KEY,
    category_id     bigint REFERENCES kb_categories(id),
    language        text NOT NULL CHECK (language IN ('ru', 'en', 'uk', 'zh')),
    title           text NOT NULL CHECK (length(btrim(title)) > 0),
    body            text NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    version         integer NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL,
    updated_by      bigint REFERENCES users(id),
    search          tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector(kb_config(language), title), 'A') ||
                        setweight(to_tsvector(kb_config(language), body), 'B')) STORED
);
CREATE INDEX kb_articles_search ON kb_articles USING gin (search);
CREATE INDEX kb_articles_title_trgm ON kb_articles USING gin (lower(title) gin_trgm_ops);
CREATE INDEX kb_articles_body_trgm ON kb_articles USING gin (lower(body) gin_trgm_ops);
CREATE INDEX kb_articles_tags ON kb_articles USING gin (tags);

CREATE TABLE kb_article_versions (
    article_id  bigint NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    version     integer NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    tags        text[] NOT NULL,
    edited_at   timestamptz NOT NULL,
    edited_by   bigint REFERENCES users(id),
    PRIMARY KEY (article_id, version)
);
