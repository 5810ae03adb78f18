# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The debtor's journey through the portal in a real browser (issue 9,
acceptance 3): Debian's Chromium driven by Playwright, with the browser's
default behaviour (no header overrides), on a phone and a desktop, with
the headless and a headed Chrome user agent.

Open the link, see every open invoice with what is owed (principal, and
the case's costs and interest apart, summing to what the case asks), the
IBAN, reference and amount, download the invoice and the letter sent,
leave a message, pay online through the Mollie simulator's checkout,
propose a plan (the item just paid left out), change the email address;
each checked in the back office's records afterwards."""
import datetime
import os
import pathlib
import re
import time
from decimal import Decimal

from playwright.sync_api import sync_playwright

from .test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS
from .test_portal import TODAY, PortalCase

INSTALL = "apt-get install chromium"
PHONE = {'width': 390, 'height': 844}
DESKTOP = {'width': 1366, 'height': 900}
HEADED_UA = ('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36')
TIMEOUT = 30000


def dutch_money(amount):
    text = '{:,.2f}'.format(amount).translate(str.maketrans(',.', '.,'))
    return 'EUR ' + text


class PortalBrowserTestCase(PortalCase):
    "The debtor portal in Chromium"

    @classmethod
    def setUpClass(cls):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError("The browser tests need Debian's Chromium "
                "at %s; install it with: %s" % (CHROMIUM, INSTALL))
        super().setUpClass()
        cls.playwright = sync_playwright().start()
        cls.chromium = cls.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        SHOTS.mkdir(parents=True, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.chromium.close()
        cls.playwright.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        with self.server.transaction() as pool:
            Administration = pool.get('payt.administration')
            Administration.write([Administration(self.administration)],
                {'iban': 'NL02ABNA0123456789'})
            administration = Administration(self.administration)
            # Names as a README reader expects them.
            pool.get('party.party').write(
                [administration.company.party],
                {'name': "Installatiebedrijf Jansen BV"})
            Debtor = pool.get('payt.debtor')
            Debtor.write(Debtor.search([
                        ('administration', '=', self.administration),
                        ('external_id', '=', 'A')]), {'name': "Anna Bakker"})
            Item = pool.get('payt.item')
            Item.write([Item(self.item_ids['A1'])], {
                    'invoice_pdf': b'%PDF-1.4 factuur F-A1',
                    'invoice_pdf_name': 'factuur-F-A1.pdf'})
        self.case_id = self.server.open_case(self.administration, 'A1')

    def open_browser(self, viewport, user_agent=None):
        "A fresh browser window as the debtor's: nothing overridden."
        options = {'viewport': viewport, 'accept_downloads': True}
        if user_agent:
            options['user_agent'] = user_agent
        context = self.chromium.new_context(**options)
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        return page

    def shot(self, page, name, keep=False):
        "A screenshot; `keep` ones go to SHOTS (`make screenshots`: the README)."
        folder = SHOTS if keep else pathlib.Path(self.server.database.folder)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / ('portal-%s.png' % name)),
            full_page=True)

    def case_total(self):
        with self.server.transaction() as pool:
            case = pool.get('payt.case')(self.case_id)
            return case.remaining_total, case.remaining_costs, \
                case.remaining_interest

    def submit(self, page, form, button):
        "Click a form's button and wait for the page it leads to."
        with page.expect_navigation():
            page.locator(form).locator('button', has_text=button).click()

    def journey(self, viewport, user_agent, name, keep=False):
        started, clicks = time.monotonic(), 0
        page = self.open_browser(viewport, user_agent)
        response = page.goto(self.url)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers['referrer-policy'], 'same-origin')
        # Every open invoice with what is owed; the case's costs and
        # interest on rows of their own; the total is what the case asks.
        total, costs, interest = self.case_total()
        self.assertGreater(costs, 0)
        self.assertGreater(interest, 0)
        table = page.locator('#items')
        self.assertIn('F-A1', table.inner_text())
        self.assertIn('F-A2', table.inner_text())
        self.assertIn(dutch_money(costs), table.locator('tr.costs')
            .inner_text())
        self.assertIn(dutch_money(interest), table.locator('tr.interest')
            .inner_text())
        owed = total + Decimal('60.50')
        self.assertEqual(page.locator('#total').inner_text(),
            dutch_money(owed))
        data = page.locator('#payment-data')
        self.assertIn('NL02 ABNA 0123 4567 89', data.inner_text())
        self.assertIn('F-A1 F-A2', data.inner_text())
        self.assertIn(dutch_money(owed), data.inner_text())
        self.assertTrue(data.locator('a[href="#pay"]').is_visible())
        self.shot(page, '%s-open' % name, keep)
        # Nothing wider than the screen on a phone.
        width = page.evaluate('document.documentElement.scrollWidth')
        self.assertLessEqual(width, viewport['width'])

        # Download the invoice and the letter sent.
        for link, start in [('#documents a:has-text("F-A1")', b'%PDF-1.4 f'),
                ('#documents a.letter', b'%PDF')]:
            with page.expect_download() as download:
                page.locator(link).first.click()
            clicks += 1
            path = download.value.path()
            self.assertTrue(pathlib.Path(path).read_bytes().startswith(
                    start), link)

        # Leave a message.
        page.locator('textarea[name=body]').fill(
            "Ik betaal F-A2 vandaag, voor F-A1 wil ik een regeling.")
        self.submit(page, 'form:has(textarea[name=body])', 'Versturen')
        clicks += 1
        self.assertIn('Uw bericht is verstuurd', page.locator('#done')
            .inner_text())

        # Pay F-A2 online through the Mollie simulator's checkout.
        page.locator('input[name=item][value="%s"]'
            % self.item_ids['A1']).uncheck()
        page.locator('input[name=item][value="%s"]'
            % self.item_ids['A2']).check()
        self.submit(page, 'form:has(input[value=pay])', 'Betalen')
        clicks += 3
        self.assertIn('Mollie simulator', page.content())
        self.assertIn('60.50', page.content())
        self.shot(page, '%s-checkout' % name)
        with page.expect_navigation(url=re.compile('/payt/portal/')):
            page.locator('button[value=paid]').click()
        clicks += 1
        self.assertIn('uw betaling is ontvangen',
            page.locator('#payment').inner_text())

        # Propose a plan: F-A2 is paid, the case remains.
        page.locator('select[name=terms]').select_option('3')
        page.locator('textarea[name=note]').fill("Drie maanden graag.")
        self.submit(page, 'form:has(select[name=terms])',
            'Regeling aanvragen')
        clicks += 2
        self.assertIn('betalingsregeling is ontvangen',
            page.locator('#done').inner_text())

        # Change the email address.
        page.locator('input[name=email]').fill('anna.nieuw@example.com')
        self.submit(page, 'form:has(input[name=email])',
            'Wijziging doorgeven')
        clicks += 2
        self.assertIn('e-mailadres is doorgegeven',
            page.locator('#done').inner_text())
        self.shot(page, '%s-done' % name, keep)
        elapsed = time.monotonic() - started
        print("\nportal journey %s: %.1f s, %s clicks" % (
                name, elapsed, clicks))
        self.check_back_office()

    def check_back_office(self):
        "Each of the debtor's actions is in the back office's records."
        with self.server.transaction() as pool:
            Message = pool.get('payt.message')
            Online = pool.get('payt.online.payment')
            Item = pool.get('payt.item')
            Plan = pool.get('payt.plan')
            Attention = pool.get('payt.attention')
            ours = [('administration', '=', self.administration)]
            message, = Message.search(ours + [('direction', '=', 'in')])
            self.assertIn('regeling', message.body)
            payment, = Online.search(ours)
            self.assertEqual((payment.status, payment.amount),
                ('paid', Decimal('60.50')))
            self.assertEqual(Item(self.item_ids['A2']).state, 'paid')
            plan, = Plan.search(ours)
            self.assertEqual((plan.state, plan.requested,
                    plan.number_of_terms), ('draft', True, 3))
            self.assertEqual([(l.item, l.case.id) for l in plan.lines],
                [(None, self.case_id)])
            total = pool.get('payt.case')(self.case_id).remaining_total
            self.assertEqual(plan.total, total)
            self.assertEqual(sum(t.amount for t in plan.terms), total)
            self.assertGreater(min(t.due_date for t in plan.terms),
                TODAY + datetime.timedelta(days=plan.reminder_days))
            reasons = {a.reason for a in Attention.search(ours)}
            self.assertLessEqual({'unread_message', 'plan_requested',
                    'details_changed', 'online_payment'}, reasons)
            change, = Attention.search(ours + [
                    ('reason', '=', 'details_changed')])
            self.assertIn('anna.nieuw@example.com', change.description)

    def test_phone_headed_chrome(self):
        "On a phone (390x844), a headed Chrome's user agent"
        self.journey(PHONE, HEADED_UA, 'phone', keep=True)

    def test_desktop_headless(self):
        "On a desktop, Chromium headless as it comes"
        self.journey(DESKTOP, None, 'desktop', keep=True)
