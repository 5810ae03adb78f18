# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Words a user reads: Dutch and English, timeline rows rendered in the
reader's language, dates and money per language, and the payment data
(IBAN, reference, amount, link, EPC QR code) on reminders and letters."""
import datetime
import io
import unittest
from decimal import Decimal
from pathlib import Path

import polib
import segno
from pypdf import PdfReader

from trytond.model.exceptions import ValidationError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import TODAY, create_administration, days, debtor, item, run

LOCALE = Path(__file__).resolve().parent.parent / 'locale'
IBAN = 'NL91ABNA0417164300'


def load_dutch():
    "Make Dutch translatable: loads every module's locale/nl.po."
    Lang = Pool().get('ir.lang')
    Lang.load_translations(Lang.search([('code', '=', 'nl')]))


def in_language(language, records, name):
    "The field as a user of `language` reads it."
    with Transaction().set_context(language=language):
        Model = Pool().get(records[0].__name__)
        return [getattr(r, name) for r in Model.browse([r.id for r in records])]


def epc_payload(name, iban, amount, text):
    """The EPC QR code's content as EPC069-12 version 002 defines it, written
    out here so the test does not trust the code under test."""
    return '\n'.join(['BCD', '002', '1', 'SCT', '', name, iban,
            'EUR%s' % amount, '', '', text])


def qr_modules(image):
    "The dark/light modules of a QR code image with a 4-module border."
    image = image.convert('L')
    for size in range(21, 178, 4):
        scale = image.width / (size + 8)
        if scale == int(scale):
            break
    scale = int(scale)
    return [[image.getpixel((int((x + 4.5) * scale), int((y + 4.5) * scale)))
            < 128 for x in range(size)] for y in range(size)]


class WordsTestCase(unittest.TestCase):
    "Words: translations, rendering per language, payment data"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def _administration(self, items, debtors=None):
        pool = Pool()
        Administration = pool.get('payt.administration')
        administration = create_administration()
        Administration.write([administration], {'iban': 'nl91 abna 0417 1643 00'})
        Administration.import_batch(administration.id, {
                'debtors': debtors or [debtor('D1', street="Dorpsstraat 1",
                        postal_code="1234 AB", city="Utrecht")],
                'items': items})
        return administration

    @with_transaction()
    def test_every_string_has_a_dutch_translation(self):
        "Every string of the module (fields, views, selections, messages, menus) is in Dutch in locale/nl.po"
        pool = Pool()
        Translation = pool.get('ir.translation')
        TranslationSet = pool.get('ir.translation.set', type='wizard')
        session_id, _, _ = TranslationSet.create()
        TranslationSet(session_id).transition_set_()
        sources = {t.src for t in Translation.search([
                    ('lang', '=', 'en'), ('module', '=', 'payt_dunning'),
                    ('src', '!=', None), ('src', '!=', '')])}
        translated = {e.msgid for e in polib.pofile(str(LOCALE / 'nl.po'))
            if e.msgstr.strip()}
        self.assertGreater(len(sources), 500)
        self.assertEqual(sorted(sources - translated), [])

    @with_transaction()
    def test_debtors_read_dutch_from_the_install_on(self):
        "On a fresh install debtors' texts are Dutch (nl.po); the administrator can still load Dutch again"
        from ..portal import t
        pool = Pool()
        Lang = pool.get('ir.lang')
        dutch, = Lang.search([('code', '=', 'nl')])
        self.assertTrue(dutch.translatable)
        self.assertEqual(t('title', 'nl'), "Uw openstaande facturen")
        with Transaction().set_user(1):     # admin, not root
            Lang.load_translations([dutch])
        self.assertEqual(t('none_open', 'nl'), "Er staan geen facturen open.")
        self.assertEqual(t('none_open', 'de'), "You have no open invoices.")

    @with_transaction()
    def test_dutch_is_loaded_in_the_back_office(self):
        "A Dutch user reads field names, selections and messages in Dutch"
        pool = Pool()
        load_dutch()
        with Transaction().set_context(language='nl'):
            Item = pool.get('payt.item')
            fields = Item.fields_get(['debtor', 'follow_up'])
        self.assertEqual(fields['debtor']['string'], "Debiteur")
        self.assertIn(('paused', "Gepauzeerd"),
            fields['follow_up']['selection'])

    @with_transaction()
    def test_attention_in_the_readers_language(self):
        "A point of attention reads in Dutch for a Dutch user and in English for an English one"
        Attention = Pool().get('payt.attention')
        load_dutch()
        administration = self._administration(
            [item('CN1', 'D1', TODAY, amount='-10.00')])
        Administration = Pool().get('payt.administration')
        Administration.import_batch(administration.id, {'payments': [{
                        'external_id': 'P9', 'item': 'UNKNOWN',
                        'date': TODAY.isoformat(), 'amount': '5.00'}]})
        attentions = Attention.search([
                ('administration', '=', administration.id),
                ('reason', '=', 'booking_error')], order=[('id', 'ASC')])
        dutch = in_language('nl', attentions, 'description')
        english = in_language('en', attentions, 'description')
        self.assertEqual(dutch[0], "Negatieve openstaande post CN1: een "
            "creditnota die nog niet is verrekend?")
        self.assertEqual(english[0],
            "Negative open item CN1: a credit note not yet matched?")
        self.assertTrue(dutch[1].startswith(
                "Betalingen zonder bekende factuur"), dutch[1])
        self.assertIn("P9 (5", dutch[1])
        self.assertIn("UNKNOWN", dutch[1])
        self.assertTrue(english[1].startswith(
                "Payments without a known invoice"), english[1])
        self.assertIn("P9 (5", english[1])
        self.assertIn("UNKNOWN", english[1])

    @with_transaction()
    def test_flow_step_names_in_the_readers_language(self):
        "The default flow's steps are named in the reader's language"
        Step = Pool().get('payt.flow.step')
        load_dutch()
        steps = Step.search([], order=[('lead_days', 'ASC')])
        self.assertIn("Eerste herinnering", in_language('nl', steps, 'name'))
        self.assertIn("First reminder", in_language('en', steps, 'name'))
        self.assertNotIn("Eerste herinnering",
            in_language('en', steps, 'name'))

    @with_transaction()
    def test_timeline_row_in_the_readers_language(self):
        "A timeline row reads in Dutch for a Dutch user and in English for an English one, with one date format each"
        pool = Pool()
        Item = pool.get('payt.item')
        Pause = pool.get('payt.pause')
        load_dutch()
        administration = self._administration(
            [item('I1', 'D1', TODAY - days(7))])
        with Transaction().set_user(0):
            run(administration, TODAY)     # as the cron: no person
        record, = Item.search([('external_id', '=', 'I1')])
        Pause.hold([record], 'pause', "Debiteur belt terug", TODAY + days(5))
        events = Item(record.id).events
        reached, = [e for e in events if e.kind == 'step']
        paused, = [e for e in events if e.kind == 'paused']
        self.assertEqual(in_language('nl', [reached], 'description'),
            ["Stap bereikt: Eerste herinnering. Overgeslagen omdat een latere "
                "stap al aan de beurt was: Vriendelijke herinnering voor de "
                "vervaldatum."])
        self.assertEqual(in_language('en', [reached], 'description'),
            ["Step reached: First reminder. Skipped, as a later step was "
                "already due: Friendly reminder before the due date."])
        self.assertEqual(in_language('nl', [reached], 'by'),
            ["Automatische run"])
        self.assertEqual(in_language('en', [reached], 'by'),
            ["Automatic run"])
        self.assertEqual(in_language('nl', [paused], 'by'),
            ["Administrator"])
        end = TODAY + days(5)
        self.assertEqual(in_language('nl', [paused], 'description'),
            ["Gepauzeerd (Openstaande post) tot %s: Debiteur belt terug"
                % end.strftime('%d-%m-%Y')])
        self.assertEqual(in_language('en', [paused], 'description'),
            ["Paused (Open Item) until %s: Debiteur belt terug"
                % end.strftime('%m/%d/%Y')])

    @with_transaction()
    def test_timeline_keeps_no_sentence(self):
        "The timeline stores a message key and parameters, not an English sentence"
        pool = Pool()
        Event = pool.get('payt.event')
        administration = self._administration(
            [item('I1', 'D1', TODAY - days(7), amount='50.00')])
        run(administration, TODAY)
        events = Event.search([])
        self.assertTrue(events)
        self.assertTrue(all(e.text_key for e in events))
        self.assertFalse([e.note for e in events if e.note])

    @with_transaction()
    def test_reminder_states_iban_reference_amount_and_link(self):
        "Every reminder (email, SMS) states the IBAN, the payment reference, the amount and a payment link"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = self._administration(
            [item('I1', 'D1', TODAY - days(7), amount='1234.50')],
            [debtor('D1', phone='+31612345678')])
        run(administration, TODAY)
        email, = Communication.search([('channel', '=', 'email'),
                ('item.administration', '=', administration.id)])
        subject, body = email.render()
        self.assertIn('NL91 ABNA 0417 1643 00', body)
        self.assertIn('onder vermelding van F-I1', body)
        self.assertIn('EUR 1.234,50', body)
        self.assertIn('/portal/', body)
        email.channel = 'sms'
        sms = email._phone_text()
        for expected in ['NL91 ABNA 0417 1643 00', 'F-I1', 'EUR 1.234,50',
                '/portal/']:
            self.assertIn(expected, sms)

    @with_transaction()
    def test_dutch_letter_with_payment_data_and_epc_qr_code(self):
        "A letter in Dutch states IBAN, reference, amount and link, without 'Kenmerk: Kenmerk', and carries the EPC QR code of that payment"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = self._administration([
                item('I1', 'D1', TODAY - days(21), amount='100.00'),
                item('I2', 'D1', TODAY - days(23), amount='21.50')])
        run(administration, TODAY)
        letters = Communication.search([('channel', '=', 'letter')])
        self.assertEqual(len(letters), 2)
        pdf, _ = Communication._render_letter(letters)
        page, = PdfReader(io.BytesIO(pdf)).pages
        text = ' '.join(page.extract_text().split())
        for expected in ["Datum: %s" % TODAY.strftime('%d-%m-%Y'),
                "Kenmerk: Debiteur D1", "Vervaldatum",
                "IBAN NL91 ABNA 0417 1643 00",
                "Betalingskenmerk F-I2 F-I1", "Te betalen EUR 121,50",
                "Ten name van Bakkerij De Korenschoof BV",
                "Online betalen http://",
                "Scan met uw bankapp om te betalen"]:
            self.assertIn(expected, text)
        # The link wraps where the line ends (its length follows the
        # database's name).
        self.assertIn('/payt/portal/', ''.join(text.split()))
        self.assertNotIn("Kenmerk: Kenmerk", text)
        image, = page.images
        expected = segno.make_qr(epc_payload(
                "Bakkerij De Korenschoof BV", IBAN, '121.5', "F-I2 F-I1"),
            error='m', boost_error=False)
        self.assertEqual(qr_modules(image.image),
            [[bool(m) for m in row] for row in expected.matrix])

    @with_transaction()
    def test_letter_in_english_dates_and_money(self):
        "An English debtor's letter: English labels, the English date format and amounts"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = self._administration(
            [item('I1', 'D1', TODAY - days(21), amount='1234.50')],
            [debtor('D1', language='en')])
        run(administration, TODAY)
        letter, = Communication.search([('channel', '=', 'letter')])
        pdf, _ = Communication._render_letter([letter])
        text = ' '.join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text(
                ).split())
        for expected in ["Date: %s" % TODAY.strftime('%m/%d/%Y'),
                "Reference: Debtor D1", "Payment reference F-I1",
                "To pay EUR 1,234.50", "Pay online"]:
            self.assertIn(expected, text)

    @with_transaction()
    def test_invalid_iban_is_refused(self):
        "An IBAN with wrong check digits is refused, naming it"
        pool = Pool()
        Administration = pool.get('payt.administration')
        administration = create_administration()
        with self.assertRaises(ValidationError) as caught:
            Administration.write([administration],
                {'iban': 'NL92ABNA0417164300'})
        self.assertIn('NL92ABNA0417164300', caught.exception.message)

    @with_transaction()
    def test_unconfirmed_interest_rate_warning_is_a_sentence(self):
        "An unconfirmed interest rate is explained in a sentence, in the user's language"
        from ..case import unconfirmed_rate_warnings
        load_dutch()
        rates = [(datetime.date(2025, 7, 1), Decimal('6'), 'one unofficial source'),
            (datetime.date(2024, 1, 1), Decimal('7'), 'sourced')]
        with Transaction().set_context(language='nl'):
            dutch = unconfirmed_rate_warnings(rates)
        english = unconfirmed_rate_warnings(rates)
        self.assertEqual(english, ["The statutory interest rate of 6% from "
                "07/01/2025 is not yet confirmed by an official publication: "
                "check the interest before you rely on it."])
        self.assertEqual(len(dutch), 1)
        self.assertIn("01-07-2025", dutch[0])
        self.assertNotIn("confidence", dutch[0] + english[0])
