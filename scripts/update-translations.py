#!/usr/bin/env python3
"""Refresh addons/payt_dunning/locale/nl.po from the module, the Tryton way.

Activates the module in a scratch SQLite database, runs Tryton's
"Set", "Update" and "Export Translations" (ir.translation), and merges
the export with the existing nl.po: every translated msgstr is kept, new
strings come in untranslated, strings the module no longer has go.

    .venv/bin/python scripts/update-translations.py
"""
import os
import sys
import tempfile
from pathlib import Path

import polib

LOCALE = (Path(__file__).resolve().parent.parent
    / 'addons' / 'payt_dunning' / 'locale')
MODULE, LANGUAGE = 'payt_dunning', 'nl'


def export(directory):
    os.environ['TRYTOND_DATABASE__URI'] = 'sqlite://'
    os.environ['TRYTOND_DATABASE__PATH'] = directory
    os.environ['DB_NAME'] = 'translations'
    from trytond.pool import Pool
    from trytond.tests.test_tryton import activate_module
    from trytond.transaction import Transaction
    activate_module([MODULE, 'account_invoice'], lang='en')
    with Transaction().start('translations', 0) as transaction:
        pool = Pool('translations')
        Translation = pool.get('ir.translation')
        Lang = pool.get('ir.lang')
        Lang.write(Lang.search([('code', '=', LANGUAGE)]),
            {'translatable': True})
        session_id, _, _ = pool.get('ir.translation.set', type='wizard'
            ).create()
        pool.get('ir.translation.set', type='wizard')(session_id
            ).transition_set_()
        Update = pool.get('ir.translation.update', type='wizard')
        session_id, _, _ = Update.create()
        update = Update(session_id)
        update.start.language, = Lang.search([('code', '=', LANGUAGE)])
        update.do_update({})
        data = Translation.translation_export(LANGUAGE, MODULE)
        transaction.rollback()
    return polib.pofile(data.decode('utf-8'))


def merge(exported, path):
    if path.exists():
        old = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}
        by_msgid = {e.msgid: e.msgstr for e in old.values() if e.msgstr}
        for entry in exported:
            known = old.get((entry.msgctxt, entry.msgid))
            entry.msgstr = (known.msgstr if known and known.msgstr
                else by_msgid.get(entry.msgid, entry.msgstr))
            if 'fuzzy' in entry.flags and entry.msgstr:
                entry.flags.remove('fuzzy')
    exported.wrapwidth = 78
    exported.save(str(path))
    missing = [e.msgid for e in exported if not e.msgstr]
    return len(exported), missing


def main():
    with tempfile.TemporaryDirectory() as directory:
        exported = export(directory)
    LOCALE.mkdir(exist_ok=True)
    total, missing = merge(exported, LOCALE / (LANGUAGE + '.po'))
    print('%s strings, %s untranslated' % (total, len(missing)))
    for msgid in missing:
        print('  ' + msgid.replace('\n', ' ')[:70])
    return 1 if missing else 0


if __name__ == '__main__':
    sys.exit(main())
