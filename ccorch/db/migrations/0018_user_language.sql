-- The language a user's desktop speaks (ru, en, zh); NULL: the browser's.
ALTER TABLE users ADD COLUMN language text CHECK (language IN ('ru', 'en', 'zh'));
