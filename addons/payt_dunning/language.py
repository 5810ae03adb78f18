# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Dutch from the first install on.

The portal, the OAuth pages and the texts sent to debtors are messages
(message.xml) with their Dutch in locale/nl.po. trytond loads a module's
.po files only for the languages that were translatable when the update
started: on a fresh database that is English alone, so a Dutch debtor
would read English until the next update. language.xml, the module's last
data file, makes Dutch translatable; when that happens the module's nl.po
is imported at once (its messages exist by then). Later updates load it
the usual way, as trytond-admin -u loads every translatable language."""
import os

from trytond.model import ModelView
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

LOCALE = os.path.join(os.path.dirname(__file__), 'locale')


class Lang(metaclass=PoolMeta):
    __name__ = 'ir.lang'

    @classmethod
    def write(cls, *args):
        actions = iter(args)
        new = {lang.code for records, values in zip(actions, actions)
            if values.get('translatable')
            for lang in records if not lang.translatable}
        super().write(*args)
        Translation = Pool().get('ir.translation')
        for code in sorted(new):
            path = os.path.join(LOCALE, code + '.po')
            if os.path.exists(path):
                Translation.translation_import(code, 'payt_dunning', [path])

    @classmethod
    @ModelView.button
    def load_translations(cls, languages):
        # language.xml holds Dutch's translatable flag, which only the root
        # user may then write; the button's access is checked for the user
        # who clicks it, above.
        with Transaction().set_user(0):
            super().load_translations(languages)
