# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The debtor portal over real HTTP: the Tryton WSGI app on a loopback
port, on a database of its own (SQLite file or PostgreSQL), with a real
SMTP catcher and the Mollie simulator.

Security cases: other debtors' ids and tokens, expired and revoked links,
CSRF on every form, rate limiting of token guessing, escaping of posted
script tags, the postcode check, request size."""
import datetime
import email
import email.policy
import re
import secrets
import threading
import unittest
from contextlib import contextmanager
from decimal import Decimal

import requests
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from trytond import backend, config
from trytond.pool import Pool
from trytond.transaction import Transaction

from . import test_server as _server

TODAY = datetime.date.today()


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content,
                policy=email.policy.default))
        return '250 OK'


class _Database(_server.Database):
    "test_server's database, under a name of its own per server."
    count = 0

    def __init__(self):
        _Database.count += 1
        self._suffix = '_%s_%s' % (_Database.count, secrets.token_hex(2))
        super().__init__()

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value + self._suffix

    def drop(self):
        # Let go of this process's connections first (PostgreSQL refuses
        # to drop a database in use).
        Pool.stop(self.name)
        backend.Database(self.name).close()
        super().drop()


def _set(section, option, value):
    if not config.has_section(section):
        config.add_section(section)
    previous = config.get(section, option)
    config.set(section, option, value)
    return previous


class PortalServer:
    """A database with the module, served in this process by werkzeug,
    plus an SMTP catcher and the Mollie simulator."""

    def __init__(self):
        from payt_hub.simulators.mollie import MollieSimulator
        Pool.start()
        self.database = _Database()
        self.name = self.database.name
        self._previous = []
        if backend.name == 'sqlite':
            self._config('database', 'path', self.database.folder)
        self.inbox = Inbox()
        self.smtp = Controller(self.inbox, hostname='127.0.0.1',
            port=_server.free_port())
        self.smtp.start()
        self._config('email', 'uri', 'smtp://127.0.0.1:%s' % self.smtp.port)
        self._config('email', 'from', 'debiteuren@payt.example')
        self.mollie = MollieSimulator().start()
        self._config('payt', 'mollie_api_endpoint', self.mollie.url)
        from trytond.wsgi import app
        with Transaction().start(self.name, 0):
            Pool(self.name).init()
        self.http = make_server('127.0.0.1', 0, app, threaded=True)
        self.url = 'http://127.0.0.1:%s' % self.http.server_port
        self._config('payt', 'portal_url', self.url)
        self._config('payt', 'portal_max_failures', '10')
        self.thread = threading.Thread(target=self.http.serve_forever,
            daemon=True)
        self.thread.start()

    def _config(self, section, option, value):
        self._previous.append((section, option,
                _set(section, option, value)))

    def stop(self):
        self.http.shutdown()
        self.http.server_close()
        self.mollie.stop()
        self.smtp.stop()
        for section, option, value in reversed(self._previous):
            if value is None:
                config._config.remove_option(section, option)
                config._cache_clear()
            else:
                config.set(section, option, value)
        self.database.drop()

    def call(self, function):
        "function(pool) in a committed transaction, restarted for locks."
        from trytond.transaction import TransactionError
        extras = {}
        while True:
            with Transaction().start(self.name, 0, **extras) as transaction:
                try:
                    result = function(Pool(self.name))
                except TransactionError as error:
                    transaction.rollback()
                    error.fix(extras)
                    continue
                transaction.commit()
                return result

    @contextmanager
    def transaction(self):
        "A committed transaction on the served database."
        with Transaction().start(self.name, 0) as transaction:
            yield Pool(self.name)
            transaction.commit()

    def setup_administration(self, name):
        "A company, its administration with a Mollie test key, two debtors."
        with self.transaction() as pool:
            Currency = pool.get('currency.currency')
            Party = pool.get('party.party')
            Company = pool.get('company.company')
            Administration = pool.get('payt.administration')
            euros = Currency.search([('code', '=', 'EUR')])
            euro = euros[0] if euros else Currency.create([{
                        'name': 'Euro', 'code': 'EUR', 'symbol': 'E',
                        'rounding': Decimal('0.01'), 'digits': 2}])[0]
            party, = Party.create([{'name': name}])
            company, = Company.create([{'party': party.id,
                        'currency': euro.id}])
            administration, = Administration.create([{
                        'company': company.id,
                        'mollie_api_key': 'test_portaltests0000000000000000'}])
            Administration.import_batch(administration.id, {
                    'debtors': [
                        {'external_id': 'A', 'name': 'Anna <b>Bakker</b>',
                            'email': 'anna@example.com', 'language': 'nl',
                            'postal_code': '1012 AB',
                            'street': 'Damrak 1', 'city': 'Amsterdam'},
                        {'external_id': 'B', 'name': 'Bram Visser',
                            'email': 'bram@example.com', 'language': 'en',
                            'postal_code': '3511 KL'}],
                    'items': [
                        {'external_id': 'A1', 'debtor': 'A',
                            'number': 'F-A1',
                            'due_date': (TODAY - datetime.timedelta(10)
                                ).isoformat(),
                            'invoice_date': (TODAY - datetime.timedelta(40)
                                ).isoformat(),
                            'amount': '121.00', 'open_amount': '121.00'},
                        {'external_id': 'A2', 'debtor': 'A',
                            'number': 'F-A2',
                            'due_date': (TODAY + datetime.timedelta(5)
                                ).isoformat(),
                            'amount': '60.50', 'open_amount': '60.50'},
                        {'external_id': 'B1', 'debtor': 'B',
                            'number': 'F-B1-SECRET',
                            'due_date': (TODAY - datetime.timedelta(3)
                                ).isoformat(),
                            'amount': '999.00', 'open_amount': '999.00'}]})
            return administration.id

    def clear_attempts(self):
        "Forget the rate limits' counts (they live in the database)."
        with self.transaction() as pool:
            pool.get('payt.portal.attempt').clear()

    def link(self, administration_id, external_id, days=None, **values):
        "A fresh portal link: (url, link id)."
        with self.transaction() as pool:
            Debtor = pool.get('payt.debtor')
            Link = pool.get('payt.portal.link')
            debtor, = Debtor.search([
                    ('administration', '=', administration_id),
                    ('external_id', '=', external_id)])
            link, token = Link.issue(debtor, days=days)
            if values:
                Link.write([link], values)
            return Link.url(token, self.name), link.id

    def open_case(self, administration_id, external_id):
        """A collection case over the item, escalated past its 14-day
        term so that it charges costs and accrues interest."""
        def escalate(pool):
            Administration = pool.get('payt.administration')
            Case = pool.get('payt.case')
            Item = pool.get('payt.item')
            item, = Item.search([('administration', '=', administration_id),
                    ('external_id', '=', external_id)])
            case, = Case.open_for_items([item], TODAY)
            Case.escalate([case])
            letter, = Case(case.id).letters
            Case.escalate_all(Administration(administration_id),
                letter.costs_chargeable_from or TODAY + datetime.timedelta(
                    days=15))
            return case.id
        return self.call(escalate)

    def items(self, administration_id):
        with self.transaction() as pool:
            Item = pool.get('payt.item')
            return {i.external_id: i.id for i in Item.search([
                        ('administration', '=', administration_id)])}


class PortalCase(unittest.TestCase):
    "Shared by the portal and online payment tests: one server per class."

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = PortalServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.server.clear_attempts()
        self.administration = self.server.setup_administration(
            'Portal %s BV' % secrets.token_hex(3))
        self.url, self.link_id = self.server.link(self.administration, 'A')
        self.item_ids = self.server.items(self.administration)
        self.browser = requests.Session()

    def get(self, url=None, **kwargs):
        return self.browser.get(url or self.url, timeout=30, **kwargs)

    def form(self, data, url=None, csrf=True, allow_redirects=False):
        "POST a portal form the way a browser does: page first, then post."
        url = url or self.url
        if csrf is True:
            page = self.get(url)
            match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
            data = dict(data, csrf=match.group(1))
        elif csrf:
            data = dict(data, csrf=csrf)
        return self.browser.post(url, data=data, timeout=30,
            allow_redirects=allow_redirects)

    def query(self, model, domain, fields=None):
        with self.server.transaction() as pool:
            Model = pool.get(model)
            records = Model.search(domain)
            if fields is None:
                return len(records)
            return [{f: getattr(r, f) for f in fields} for r in records]

    def ours(self, domain):
        return [('administration', '=', self.administration)] + domain


class PortalTestCase(PortalCase):
    "The debtor portal"

    def test_page_lists_the_debtors_open_items_in_dutch_and_english(self):
        "Items, amounts and due dates of this debtor only, in NL or EN"
        response = self.get()
        self.assertEqual(response.status_code, 200)
        page = response.text
        self.assertIn('Uw openstaande facturen', page)
        self.assertIn('F-A1', page)
        self.assertIn('F-A2', page)
        self.assertIn('EUR 121,00', page)
        self.assertIn('EUR 60,50', page)
        self.assertIn((TODAY - datetime.timedelta(10)).strftime('%d-%m-%Y'),
            page)
        self.assertNotIn('F-B1-SECRET', page)
        self.assertNotIn('999', page)
        self.assertIn('name="viewport"', page)
        self.assertNotIn('<script', page.lower())
        english = self.get(self.url + '?lang=en').text
        self.assertIn('Your open invoices', english)
        self.assertIn('EUR 121.00', english)
        headers = response.headers
        self.assertIn("default-src 'none'", headers['Content-Security-Policy'])
        # same-origin: Chromium then posts the forms with their Origin.
        self.assertEqual(headers['Referrer-Policy'], 'same-origin')
        self.assertEqual(headers['Cache-Control'], 'no-store')
        self.assertEqual(headers['X-Frame-Options'], 'DENY')

    def test_dutch_words_come_from_the_translations(self):
        "A fresh install speaks Dutch from nl.po: a changed translation shows"
        def retitle(pool, text):
            Translation = pool.get('ir.translation')
            ModelData = pool.get('ir.model.data')
            nl, = pool.get('ir.lang').search([('code', '=', 'nl')])
            self.assertTrue(nl.translatable)
            translation, = Translation.search([('lang', '=', 'nl'),
                    ('name', '=', 'ir.message,text'), ('type', '=', 'model'),
                    ('res_id', '=', ModelData.get_id('payt_dunning',
                            'msg_portal_title'))])
            previous, translation.value = translation.value, text
            translation.save()
            return previous
        previous = self.server.call(
            lambda pool: retitle(pool, 'Wat u ons nog betaalt'))
        try:
            self.assertIn('<h1>Wat u ons nog betaalt</h1>', self.get().text)
            self.assertIn('<h1>Your open invoices</h1>',
                self.get(self.url + '?lang=en').text)
        finally:
            self.server.call(lambda pool: retitle(pool, previous))
        self.assertIn('<h1>Uw openstaande facturen</h1>', self.get().text)

    def test_a_language_without_translation_reads_english(self):
        "German, translatable but without a German nl.po: English words"
        from ..api_oauth import texts
        from ..portal import t
        with Transaction().start(self.server.name, 0):   # rolled back
            Lang = Pool(self.server.name).get('ir.lang')
            Lang.write(Lang.search([('code', '=', 'de')]),
                {'translatable': True})
            self.assertEqual(t('title', 'de'), "Your open invoices")
            self.assertEqual(t('hello', 'de') % 'Anna', "Welcome, Anna")
            self.assertEqual(texts('de')['heading'],
                "Grant access to the API")
            self.assertEqual(t('title', 'nl'), "Uw openstaande facturen")

    def test_tokens_are_long_hashed_and_scoped(self):
        "256-bit tokens, stored only as a hash; unknown, expired, revoked: 404"
        token = self.url.rsplit('/', 1)[1]
        self.assertGreaterEqual(len(token), 43)
        with self.server.transaction() as pool:
            Link = pool.get('payt.portal.link')
            link = Link(self.link_id)
            self.assertNotEqual(link.token_hash, token)
            table = Link.__table__()
            cursor = Transaction().connection.cursor()
            cursor.execute(*table.select(where=table.id == link.id))
            self.assertNotIn(token, repr(cursor.fetchall()))
        base = self.url.rsplit('/', 1)[0]
        for wrong in [secrets.token_urlsafe(32), token[:-1] + (
                    'A' if token[-1] != 'A' else 'B'), '1', 'x' * 43,
                "' OR 1=1 --"]:
            response = self.get(base + '/' + wrong)
            self.assertEqual(response.status_code, 404, wrong)
            self.assertNotIn('F-A1', response.text)
        expired, _ = self.server.link(self.administration, 'A',
            expires_at=datetime.datetime.now() - datetime.timedelta(
                minutes=1))
        self.assertEqual(self.get(expired).status_code, 404)
        revoked, revoked_id = self.server.link(self.administration, 'A')
        self.assertEqual(self.get(revoked).status_code, 200)
        with self.server.transaction() as pool:
            Link = pool.get('payt.portal.link')
            Link.revoke([Link(revoked_id)])
        self.assertEqual(self.get(revoked).status_code, 404)

    def test_no_access_to_another_debtors_data_by_changing_ids(self):
        "Pay, message and PDF with another debtor's item id are refused"
        other = self.item_ids['B1']
        with self.server.transaction() as pool:
            Item = pool.get('payt.item')
            Item.write([Item(other)], {'invoice_pdf': b'%PDF-1.4 secret',
                    'invoice_pdf_name': 'b.pdf'})
        response = self.form({'action': 'pay', 'item': [str(other)]})
        self.assertEqual(response.status_code, 404)
        response = self.form({'action': 'pay', 'item': [
                    str(self.item_ids['A1']), str(other)]})
        self.assertEqual(response.status_code, 404)
        response = self.form({'action': 'message', 'item': str(other),
                'body': "hello"})
        self.assertEqual(response.status_code, 404)
        response = self.form({'action': 'message', 'item': 'abc',
                'body': "hello"})
        self.assertEqual(response.status_code, 404)
        response = self.get(self.url + '/invoice/%s' % other)
        self.assertEqual(response.status_code, 404)
        self.assertNotIn(b'secret', response.content)
        self.assertEqual(self.query('payt.online.payment',
                self.ours([])), 0)
        self.assertEqual(self.query('payt.message', self.ours([])), 0)
        # B's own link does not open A's PDF either.
        b_url, _ = self.server.link(self.administration, 'B')
        with self.server.transaction() as pool:
            Item = pool.get('payt.item')
            Item.write([Item(self.item_ids['A1'])], {
                    'invoice_pdf': b'%PDF-1.4 anna', 'invoice_pdf_name':
                    'a.pdf'})
        response = self.browser.get(b_url + '/invoice/%s'
            % self.item_ids['A1'], timeout=30)
        self.assertEqual(response.status_code, 404)
        response = self.get(self.url + '/invoice/%s' % self.item_ids['A1'])
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers['Content-Type'], 'application/pdf')
        self.assertEqual(response.content, b'%PDF-1.4 anna')
        self.assertIn('/invoice/%s' % self.item_ids['A1'], self.get().text)

    def test_every_form_needs_its_csrf_token(self):
        "No token, a wrong one, or one bound to another cookie: 403"
        for action in ['message', 'plan', 'email', 'pay', 'verify']:
            data = {'action': action, 'body': 'x', 'terms': '3',
                'email': 'new@example.com', 'item': str(
                    self.item_ids['A1']), 'postcode': '1012AB'}
            self.get()
            self.assertEqual(self.form(data, csrf=False).status_code, 403,
                action)
            self.assertEqual(self.form(data, csrf='0' * 64).status_code,
                403, action)
        # A token taken from another browser's page (another cookie).
        other = requests.Session()
        page = other.get(self.url, timeout=30).text
        stolen = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        self.get()
        response = self.form({'action': 'message', 'body': 'x'},
            csrf=stolen)
        self.assertEqual(response.status_code, 403)
        # Every form on the page carries the token.
        page = self.get().text
        self.assertEqual(page.count('<form'), page.count('name="csrf"'))
        self.assertEqual(self.query('payt.message', self.ours([])), 0)
        self.assertEqual(self.query('payt.attention', self.ours([])), 0)

    def test_token_guessing_is_rate_limited(self):
        "After 10 wrong tokens the address gets 429; a right token opens"
        base = self.url.rsplit('/', 1)[0]
        codes = [self.get(base + '/' + secrets.token_urlsafe(32)).status_code
            for _ in range(10)]
        self.assertEqual(codes, [404] * 10)
        response = self.get(base + '/' + secrets.token_urlsafe(32))
        self.assertEqual(response.status_code, 429)
        self.assertIn('Retry-After', response.headers)
        self.assertEqual(response.headers['X-Frame-Options'], 'DENY')
        # The debtor behind the same proxy is not locked out.
        self.assertEqual(self.get().status_code, 200)
        self.server.clear_attempts()
        self.assertEqual(self.get(base + '/' + secrets.token_urlsafe(32)
                ).status_code, 404)

    def test_posted_script_tags_come_back_inert(self):
        "Messages and names are escaped on the page"
        attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
        response = self.form({'action': 'message', 'body': attack,
                'item': str(self.item_ids['A1'])})
        self.assertEqual(response.status_code, 303)
        page = self.get().text
        self.assertNotIn('<script>alert', page)
        self.assertNotIn('<img src=x', page)
        self.assertIn('&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;',
            page)
        # The debtor's name from the import is escaped too.
        self.assertIn('Anna &lt;b&gt;Bakker&lt;/b&gt;', page)
        self.assertNotIn('<b>Bakker', page)
        # Query parameters are not reflected.
        page = self.get(self.url + '?done=<script>&error=<x>&lang=<y>').text
        self.assertNotIn('<script>', page)
        self.assertNotIn('<x>', page)
        self.assertNotIn('<y>', page)

    def test_message_plan_and_email_change_reach_the_creditor(self):
        "Each form lands as a record and a point of attention"
        response = self.form({'action': 'message', 'body': "Wanneer komt "
                "de creditnota?", 'item': str(self.item_ids['A1'])})
        self.assertEqual(response.status_code, 303)
        self.assertIn('done=message', response.headers['Location'])
        self.assertIn('Uw bericht is verstuurd', self.get(
                response.headers['Location'] if response.headers[
                    'Location'].startswith('http') else self.server.url
                + response.headers['Location']).text)
        messages = self.query('payt.message', self.ours([]),
            ['direction', 'body', 'seen'])
        self.assertEqual(messages, [{'direction': 'in', 'body':
                    "Wanneer komt de creditnota?", 'seen': False}])
        self.assertEqual(self.query('payt.attention', self.ours(
                    [('reason', '=', 'unread_message')])), 1)
        response = self.form({'action': 'plan', 'terms': '4',
                'note': "Ik kan 50 per maand"})
        self.assertEqual(response.status_code, 303)
        plans = self.query('payt.plan', self.ours([]),
            ['state', 'requested', 'number_of_terms', 'request_note',
                'total'])
        self.assertEqual(plans, [{'state': 'draft', 'requested': True,
                    'number_of_terms': 4,
                    'request_note': "Ik kan 50 per maand",
                    'total': Decimal('181.50')}])
        self.assertEqual(self.query('payt.attention', self.ours(
                    [('reason', '=', 'plan_requested')])), 1)
        response = self.form({'action': 'plan', 'terms': '99'})
        self.assertIn('error=terms', response.headers['Location'])
        response = self.form({'action': 'email',
                'email': 'anna.nieuw@example.com'})
        self.assertIn('done=email', response.headers['Location'])
        changes = self.query('payt.attention', self.ours(
                [('reason', '=', 'details_changed')]), ['description'])
        self.assertIn('anna.nieuw@example.com', changes[0]['description'])
        with self.server.transaction() as pool:
            Debtor = pool.get('payt.debtor')
            anna, = Debtor.search(self.ours([('external_id', '=', 'A')]))
            self.assertEqual(anna.email, 'anna@example.com')
        response = self.form({'action': 'email', 'email': 'not an email'})
        self.assertIn('error=email', response.headers['Location'])
        # The creditor answers in the client: an email with a portal link,
        # and the answer shows in the thread.
        self.server.inbox.messages.clear()
        with self.server.transaction() as pool:
            Message = pool.get('payt.message')
            Debtor = pool.get('payt.debtor')
            anna, = Debtor.search(self.ours([('external_id', '=', 'A')]))
            Message.create([{'administration': self.administration,
                        'debtor': anna.id, 'body': "Volgende week."}])
        mail, = self.server.inbox.messages
        link = re.search(r'http://\S+/payt/portal/\S+', mail.get_content())
        page = requests.get(link.group(0), timeout=30).text
        self.assertIn('Volgende week.', page)
        self.assertIn('Wanneer komt de creditnota?', page)
        self.assertEqual(self.query('payt.message', self.ours([
                        ('direction', '=', 'out'), ('seen', '=', True)])), 1)

    def test_postcode_check(self):
        "With the check on, nothing shows before the right postcode"
        with self.server.transaction() as pool:
            Administration = pool.get('payt.administration')
            Administration.write([Administration(self.administration)],
                {'portal_postcode_check': True})
        page = self.get().text
        self.assertIn('name="postcode"', page)
        self.assertNotIn('F-A1', page)
        response = self.form({'action': 'message', 'body': 'x'})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.get(self.url + '/invoice/%s'
                % self.item_ids['A1']).status_code, 403)
        wrong = self.form({'action': 'verify', 'postcode': '9999 ZZ'})
        self.assertEqual(wrong.status_code, 401)
        self.assertNotIn('F-A1', wrong.text)
        right = self.form({'action': 'verify', 'postcode': '1012ab'},
            allow_redirects=True)
        self.assertEqual(right.status_code, 200)
        self.assertIn('F-A1', right.text)
        # The check is per link: another link asks again.
        other, _ = self.server.link(self.administration, 'A')
        self.assertIn('name="postcode"', self.get(other).text)
        # Wrong postcodes count per link and address: 5, then 429 for
        # that link only; the first link (verified) still opens.
        for _ in range(5):
            self.assertEqual(self.form({'action': 'verify',
                        'postcode': '0000 AA'}, url=other).status_code, 401)
        self.assertEqual(self.get(other).status_code, 429)
        self.assertEqual(self.get().status_code, 200)
        third, _ = self.server.link(self.administration, 'A')
        self.assertIn('name="postcode"', self.get(third).text)

    def test_large_requests_are_refused(self):
        "No uploads: a body above 64 KiB is refused"
        self.get()
        response = self.browser.post(self.url, data={'action': 'message',
                'body': 'x' * (70 * 1024)}, timeout=30)
        self.assertEqual(response.status_code, 413)
        self.assertEqual(self.query('payt.message', self.ours([])), 0)

    def test_reminder_email_carries_a_working_personal_link(self):
        "The run's reminder has ${portal_url}: a link that opens the page"
        def remind(pool):
            Administration = pool.get('payt.administration')
            Template = pool.get('payt.flow.step.template')
            Run = pool.get('payt.run')
            Communication = pool.get('payt.communication')
            administration = Administration(self.administration)
            templates = [t for s in administration.flow.steps
                for t in s.templates]
            for template in templates:
                if '${portal_url}' not in template.body:
                    template.body += "\n\n${portal_url}"
            Template.save(templates)
            Run.execute(administration, TODAY)
            self.server.inbox.messages.clear()
            Communication.send_pending(administration)
        self.server.call(remind)
        mails = {m['To']: m for m in self.server.inbox.messages}
        body = mails['anna@example.com'].get_content()
        url = re.search(r'http://\S+/payt/portal/[A-Za-z0-9_-]+', body)
        self.assertIsNotNone(url, body)
        page = requests.get(url.group(0), timeout=30)
        self.assertEqual(page.status_code, 200)
        self.assertIn('F-A1', page.text)
        bram = re.search(r'http://\S+/payt/portal/[A-Za-z0-9_-]+',
            mails['bram@example.com'].get_content()).group(0)
        self.assertNotEqual(bram, url.group(0))
        self.assertNotIn('F-A1', requests.get(bram, timeout=30).text)


class PortalMoneyTestCase(PortalCase):
    "What the portal asks adds up to what the back office asks"

    def case_figures(self, case_id):
        with self.server.transaction() as pool:
            case = pool.get('payt.case')(case_id)
            return {'costs': case.remaining_costs,
                'interest': case.remaining_interest,
                'principal': case.remaining_principal,
                'total': case.remaining_total}

    def money(self, amount):
        "EUR 1.234,56 as the Dutch page writes it."
        text = '{:,.2f}'.format(amount).translate(str.maketrans(',.', '.,'))
        return 'EUR ' + text

    def test_page_owes_what_the_case_asks(self):
        "Principal, costs and interest of the case; total = back office"
        with self.server.transaction() as pool:
            Administration = pool.get('payt.administration')
            Administration.write([Administration(self.administration)],
                {'iban': 'nl02 abna 0123 4567 89'})
        case_id = self.server.open_case(self.administration, 'A1')
        figures = self.case_figures(case_id)
        self.assertGreater(figures['costs'], 0)
        self.assertGreater(figures['interest'], 0)
        page = self.get().text
        total = figures['total'] + Decimal('60.50')
        self.assertIn(self.money(figures['costs']), page)
        self.assertIn(self.money(figures['interest']), page)
        self.assertIn('Incassokosten', page)
        self.assertIn('Wettelijke rente', page)
        self.assertIn('<th class="n" id="total">%s</th>'
            % self.money(total), page)
        # Payment data: IBAN, reference, amount, a link to pay.
        data = re.search(r'<section id="payment-data".*?</section>', page,
            re.S).group(0)
        self.assertIn('NL02 ABNA 0123 4567 89', data)
        self.assertIn('<strong id="reference">F-A1 F-A2</strong>', data)
        self.assertIn(self.money(total), data)
        self.assertIn('href="#pay"', data)
        # The case's 14-day letter can be downloaded.
        letter = re.search(r'href="([^"]+/letter/case/\d+)"', page).group(1)
        response = self.get(self.server.url + letter)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.content.startswith(b'%PDF'))
        # Another debtor's link does not open it.
        b_url, _ = self.server.link(self.administration, 'B')
        self.assertEqual(requests.get(b_url + letter[letter.index(
                        '/letter/'):], timeout=30).status_code, 404)

    def test_plan_takes_the_case_and_leaves_out_what_was_paid(self):
        "A plan over the case (costs included), not the item paid just now"
        case_id = self.server.open_case(self.administration, 'A1')
        # A2 is paid online a minute before the plan is asked.
        response = self.form({'action': 'pay',
                'item': [str(self.item_ids['A2'])]})
        self.assertEqual(response.status_code, 303)
        mollie_id = response.headers['Location'].rsplit('/', 1)[1]
        self.server.mollie.set_status(mollie_id, 'paid')
        self.assertEqual(self.query('payt.item', self.ours([
                        ('external_id', '=', 'A2'), ('state', '=', 'paid')])),
            1)
        response = self.form({'action': 'plan', 'terms': '3'})
        self.assertIn('done=plan', response.headers['Location'])
        figures = self.case_figures(case_id)
        with self.server.transaction() as pool:
            Plan = pool.get('payt.plan')
            plan, = Plan.search(self.ours([]))
            self.assertEqual([(l.item, l.case and l.case.id, l.amount)
                    for l in plan.lines], [(None, case_id, figures['total'])])
            self.assertEqual(plan.total, figures['total'])
            self.assertEqual(sum(t.amount for t in plan.terms),
                figures['total'])
            first = min(t.due_date for t in plan.terms)
            # Its reminder (3 days before) goes out after today.
            self.assertGreater(first - datetime.timedelta(
                    days=plan.reminder_days), TODAY)

    def test_first_term_of_a_new_plan_is_after_its_reminder(self):
        "Back office too: the first term does not fall due today"
        with self.server.transaction() as pool:
            Plan = pool.get('payt.plan')
            self.assertEqual(Plan.default_start_date(),
                TODAY + datetime.timedelta(days=4))
            self.assertEqual(Plan.earliest_start_date(0),
                TODAY + datetime.timedelta(days=1))

    def test_plan_requests_are_limited_per_link_and_day(self):
        "Three requests a day per link; a fourth is refused, nothing made"
        for _ in range(3):
            response = self.form({'action': 'plan', 'terms': '2'})
            self.assertIn('done=plan', response.headers['Location'])
        response = self.form({'action': 'plan', 'terms': '2'})
        self.assertIn('error=plan_limit', response.headers['Location'])
        self.assertEqual(self.query('payt.plan', self.ours([])), 3)


class PortalLimitTestCase(PortalCase):
    "Limits and refusals as every server process sees them"

    def test_rate_limit_is_seen_by_every_connection(self):
        "Failures counted by the server block another server's requests"
        from trytond.wsgi import app
        base = self.url.rsplit('/', 1)[0]
        for _ in range(10):
            self.get(base + '/' + secrets.token_urlsafe(32))
        # Another connection to the database sees the block.
        with self.server.transaction() as pool:
            Attempt = pool.get('payt.portal.attempt')
            self.assertTrue(Attempt.blocked('token:127.0.0.1', 10, 600))
            self.assertFalse(Attempt.blocked('token:10.0.0.1', 10, 600))
        # A second server (its own connections) refuses at once.
        second = make_server('127.0.0.1', 0, app, threaded=True)
        thread = threading.Thread(target=second.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(second.server_close)
        self.addCleanup(second.shutdown)
        other = base.replace(self.server.url,
            'http://127.0.0.1:%s' % second.server_port)
        response = requests.get(other + '/' + secrets.token_urlsafe(32),
            timeout=30)
        self.assertEqual(response.status_code, 429)

    def assert_secure(self, response):
        headers = response.headers
        self.assertIn("default-src 'none'", headers['Content-Security-Policy'])
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        self.assertEqual(headers['X-Content-Type-Options'], 'nosniff')
        self.assertEqual(headers['Referrer-Policy'], 'same-origin')
        self.assertEqual(headers['Cache-Control'], 'no-store')
        self.assertIn('text/html', headers['Content-Type'])

    def test_refusals_are_portal_pages_with_security_headers(self):
        "404, 403 (CSRF, other site, Origin null), never a 500"
        base = self.url.rsplit('/', 1)[0]
        response = self.get(base + '/' + secrets.token_urlsafe(32))
        self.assertEqual(response.status_code, 404)
        self.assert_secure(response)
        self.assertIn('ongeldig of verlopen', response.text)
        response = self.form({'action': 'message', 'body': 'x'},
            csrf='0' * 64)
        self.assertEqual(response.status_code, 403)
        self.assert_secure(response)
        self.assertIn('Open uw link opnieuw', response.text)
        self.assertIn('Please open your link again', response.text)
        for origin in ['http://evil.example', 'null']:
            page = self.get().text
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"',
                page).group(1)
            response = self.browser.post(self.url, data={
                    'action': 'message', 'body': 'x', 'csrf': csrf},
                headers={'Origin': origin}, allow_redirects=False,
                timeout=30)
            self.assertEqual(response.status_code, 403, origin)
            self.assert_secure(response)
        # The page's own origin, as Chromium sends it: accepted.
        page = self.get().text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        response = self.browser.post(self.url, data={'action': 'message',
                'body': 'Same origin', 'csrf': csrf},
            headers={'Origin': self.server.url}, allow_redirects=False,
            timeout=30)
        self.assertEqual(response.status_code, 303)
        self.assertEqual(self.query('payt.message', self.ours([])), 1)

    def test_a_50_mb_post_is_refused_before_it_is_read(self):
        "413 with the portal's headers; nothing stored"
        self.get()
        body = b'body=' + b'x' * (50 * 1024 * 1024)
        try:
            response = self.browser.post(self.url, data=body, headers={
                    'Content-Type': 'application/x-www-form-urlencoded'},
                timeout=60)
        except requests.ConnectionError:
            # The server answered and closed before the client was done.
            response = None
        if response is not None:
            self.assertEqual(response.status_code, 413)
            self.assert_secure(response)
        self.assertEqual(self.query('payt.message', self.ours([])), 0)

    def test_request_logs_do_not_carry_the_token(self):
        "The server's request logs mask the portal token"
        token = self.url.rsplit('/', 1)[1]
        with self.assertLogs(level='INFO') as logs:
            self.assertEqual(self.get().status_code, 200)
            self.get(self.url + '/invoice/0')
        text = '\n'.join(logs.output)
        self.assertIn('/payt/portal/***', text)
        self.assertNotIn(token, text)
