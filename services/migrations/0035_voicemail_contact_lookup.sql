-- The recording service's sweep of plain voicemail files (services/recording/voicemails.py) finds each
-- message's tenant through its task's contact, whose id it derives from the file's name. This shows that
-- one contact, to a transaction that names its id, and nothing else: like api_keys' key_lookup, knowing
-- the id is the credential (and the file itself, which only the platform's hosts hold).
CREATE POLICY voicemail_lookup ON contacts FOR SELECT
    USING (id = nullif(current_setting('app.voicemail_contact', true), '')::uuid);
