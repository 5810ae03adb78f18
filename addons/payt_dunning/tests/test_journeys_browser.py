# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The acceptance journeys of issue 9 in a real browser, each as its user:
the back office (`anna`) and the consultant (`consultant`), in sao on the
demo database, at 1366x768, through the menu as a person clicks.

Each journey prints its time and number of clicks; the database is checked
over JSON-RPC as the same user afterwards. `take_screenshots(case, 'nl')`
photographs the README screens again, in another language."""
import datetime
import re
import time
import unittest

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .test_browser import SHOTS, SaoBrowser

SIZE = {'width': 1366, 'height': 768}
ADMINISTRATION = "Bakkerij De Korenschoof BV"
STEP = 'First reminder'
# The default flow's step names as each language reads them.
STEPS = {
    'en': {'first': STEP, 'second': "Second reminder",
        'final': "Final demand", 'collection': "Handover to collection"},
    'nl': {'first': "Eerste herinnering", 'second': "Tweede herinnering",
        'final': "Laatste aanmaning", 'collection': "Overdracht aan incasso"},
    }
PAYT = "Debtor Management"
PASSWORD = 'payt-demo-2026'


def take_screenshots(case, language='en', folder=SHOTS):
    """The README's screens as the back office sees them: its dashboard, an
    invoice with its timeline. Re-run with language='nl' once the Dutch
    locale is in (the user's language is set first)."""
    case.set_language(language)
    case.fresh()
    step = STEPS[language]['first']
    case.dashboard_tab(step)
    case.shot('dashboard', folder)
    case.open_record('payt.item', case.item_with_timeline())
    case.tab().locator('.nav-tabs a', has_text=case.label('events')).click()
    case.tab().locator('tr', has_text=step).first.wait_for()
    case.shot('item-timeline', folder)


class JourneyBrowser(SaoBrowser):
    "Clicks counted, screens opened through the menu."
    viewport = SIZE

    def setUp(self):
        self.clicks = 0
        self.started = time.monotonic()
        super().setUp()

    def report(self, journey):
        "The figures the closing note of the issue gives per journey."
        seconds = time.monotonic() - self.started
        print("\nJOURNEY %s as %s: %.1f s, %d clicks" % (
                journey, self.user, seconds, self.clicks))

    def start_journey(self, language, user=None):
        "As `user` in `language` on a new page; clock and clicks from zero."
        if user:
            self.user = user
        self.set_language(language)
        self.fresh()
        self.clicks = 0
        self.started = time.monotonic()

    def click(self, locator, **kwargs):
        self.clicks += 1
        locator.click(**kwargs)

    def dblclick(self, locator):
        self.clicks += 2
        locator.dblclick()

    def label(self, field, model='payt.item'):
        "A field's label as the user's language shows it."
        return self.rpc('model.%s.fields_get' % model, [field],
            self.context)[field]['string']

    def set_language(self, language):
        self.rpc('model.res.user.get_preferences', True, {})
        self.rpc('model.res.user.set_preferences', {'language': language},
            self.context)
        type(self).sessions.pop(self.user, None)
        # A new session: self.context in the new language.
        self.rpc('model.res.user.get_preferences', True, {})

    # -- navigation ---------------------------------------------------------
    def menu(self, *path):
        "Click through the menu on the left, as a person does."
        menu = self.page.locator('#menu')

        def entry(name):
            return menu.locator('div.column-char[title="%s"]' % name).first
        for index, name in enumerate(path):
            following = path[index + 1:index + 2]
            if following and entry(following[0]).is_visible():
                continue   # already unfolded
            self.click(entry(name))
        self.tab().wait_for()

    def open_record(self, model, record_id):
        """A record's form, opened by its address: the two clicks of a
        person who picks it from the menu's list are counted."""
        self.clicks += 2
        panes = "document.querySelectorAll('#tabcontent > .tab-pane').length"
        before = self.page.evaluate(panes)
        self.open(model, record_id)
        self.page.wait_for_function("() => %s > %s" % (panes, before))
        tab = self.tab()
        tab.locator('.form').first.wait_for()
        tab.locator('button:visible').first.wait_for()
        time.sleep(1)   # the record's values arrive after the form
        return tab

    def shown(self, scope, label):
        "The value of a field once the form has filled it in."
        for _ in range(50):
            value = self.field(scope, label)
            if value:
                return value
            time.sleep(0.2)
        return value

    def open_administration(self, administration):
        "The administration's form, opened untouched (nothing to dismiss)."
        return self.open_record('payt.administration', administration)

    def dismiss_modified(self, timeout=3000):
        """A form holding a change the server refused: sao asks to save
        it on Reload; not saving is what the consultant wants."""
        modified = self.page.locator('.modal-dialog:visible',
            has_text="has been modified")
        try:
            modified.wait_for(timeout=timeout)
        except PlaywrightTimeout:
            return
        self.click(modified.locator('button', has_text="No"))

    def tree_button(self, row, text):
        """A button in a list. Sao takes the first click for selecting the
        row; a person clicks again, and so does this."""
        button = row.locator('button', has_text=text)
        for attempt in range(4):
            self.click(button)
            try:
                button.wait_for(state='hidden', timeout=3000)
                return
            except PlaywrightTimeout:
                continue
        self.fail("%s did nothing" % text)

    def button(self, text, scope=None):
        self.click((scope or self.tab()).locator(
                'button:visible', has_text=text).first)
        self.dismiss_modified(timeout=1000)

    def button_until(self, text, shown):
        """Click `text`, then wait for the button `shown`. Under load sao
        sometimes does not redraw the form after the call: reload it, as a
        person would (clicking again is refused: the button's state)."""
        self.button(text)
        target = self.tab().locator('button:visible', has_text=shown).first
        try:
            target.wait_for()
        except PlaywrightTimeout:
            self.click(self.tab().locator('button#reload:visible').first)
            self.dismiss_modified()
            target.wait_for()

    def action(self, name):
        "The form's Action menu (the keywords form_action)."
        tab = self.tab()
        # Sao fills the menu after it opened: wait for it, as a person does.
        for attempt in range(3):
            self.click(tab.locator('button#action:visible').first)
            entry = tab.locator('.dropdown-menu a:visible', has_text=name)
            try:
                entry.first.click(timeout=5000)
                self.clicks += 1
                return
            except PlaywrightTimeout:
                self.page.keyboard.press('Escape')
        self.fail("no action %s" % name)

    def wizard_ok(self, text):
        dialog = self.dialog()
        self.click(dialog.locator('.modal-footer button', has_text=text))
        self.wait_no_dialog()

    def wait_no_dialog(self):
        self.page.wait_for_function(
            "() => !Array.from(document.querySelectorAll('.modal-dialog'))"
            ".some(e => e.offsetParent)")

    def fill_field(self, scope, name, value, loaded=False):
        """Type in the input of a field, found by the field's name; loaded:
        once it shows the record's value."""
        scope.locator('[name="%s"]' % name).first.wait_for(state='attached')
        if loaded:
            scope.evaluate("""(scope, name) => new Promise(resolve => {
                const check = () => Array.from(scope.querySelectorAll(
                        '[name="' + name + '"]')).some(e => e.value)
                    ? resolve() : setTimeout(check, 100);
                check(); })""", name)
        # Sao keeps a hidden twin of some inputs (a number's text and
        # number inputs swap on focus): focus the one shown, then fill the
        # one shown then.
        def shown():
            return scope.evaluate_handle("""(scope, name) => Array.from(
                scope.querySelectorAll('[name="' + name + '"]')).find(
                    e => e.offsetParent)""", name).as_element()
        self.clicks += 1
        shown().focus()
        time.sleep(0.2)
        field = shown()
        field.fill(value)
        field.press('Tab')

    def date_text(self, date):
        "A date as the user's language types it (sao's format)."
        return date.strftime(self.context.get('locale', {}).get(
                'date', '%m/%d/%Y'))

    def save(self):
        "Save as with the toolbar's button (the tests check what is stored)."
        self.click(self.tab().locator('button#save:visible').first)

    # -- data the journeys start from ----------------------------------------
    def ids(self, model, domain):
        return self.search(model, domain)

    def value(self, model, record_id, field):
        return self.read(model, [record_id], [field])[0][field]

    def assertStored(self, model, record_id, field, expected):
        "The database holds the value once the click's call is answered."
        for _ in range(50):
            value = self.value(model, record_id, field)
            if value == expected:
                return
            time.sleep(0.2)
        self.assertEqual(value, expected, "%s %s" % (model, field))

    def dashboard_tab(self, step=STEP):
        tab = self.tab()
        tab.locator('tr', has_text=step).first.wait_for(timeout=60_000)
        return tab

    def item_with_timeline(self):
        administration = self.administration(ADMINISTRATION)
        first = self.rpc('model.ir.model.data.get_id', 'payt_dunning',
            'step_first', {})
        step, = self.ids('payt.flow.step', [('id', '=', first)])
        items = self.read('payt.item', self.ids('payt.item', [
                    ('administration', '=', administration),
                    ('step', '=', step), ('state', '=', 'open'),
                    ('case', '=', None), ('plan_lines', '=', None)]),
            ['follow_up'])
        return [i['id'] for i in items if i['follow_up'] == 'active'][0]



class JourneysTestCase(JourneyBrowser, unittest.TestCase):
    "The back office and the consultant at work, in Chromium"

    def test_back_office(self):
        "anna: dashboard, attention, invoice, pauses, plans, reply, waive"
        self.start_journey('en', 'anna')
        administration = self.administration(ADMINISTRATION)

        # Lands on the dashboard of her administration.
        tab = self.dashboard_tab()
        text = tab.inner_text()
        self.assertIn("Not yet due", text)
        self.assertIn(ADMINISTRATION, text)
        amount_cell = tab.locator('tr', has_text=STEP).first.locator(
            'td', has_text=re.compile(r'^\s*[\d,]+\.\d\d\s*$')).first
        box = amount_cell.bounding_box()
        self.assertLess(box['x'] + box['width'], SIZE['width'],
            "amount visible without scrolling")

        # The unread message: resolved, hence read.
        message, = self.ids('payt.message', [
                ('direction', '=', 'in'), ('seen', '=', False)])[:1]
        self.menu(PAYT, "Points of Attention")
        tab = self.tab()
        self.click(tab.locator('.nav-tabs a', has_text="Unread message"))
        row = tab.locator('tbody tr', has_text="Message from").first
        row.wait_for()
        self.tree_button(row, "Resolve")
        self.assertStored('payt.message', message, 'seen', True)

        # An invoice: its timeline and next step with its date.
        item = self.item_with_timeline()
        tab = self.open_record('payt.item', item)
        self.assertEqual(self.shown(tab, "Next Step:"),
            self.read('payt.item', [item], ['next_step.rec_name'])[0][
                'next_step.']['rec_name'])
        self.assertTrue(self.shown(tab, "Next Step On:"))
        self.click(tab.locator('.nav-tabs a', has_text="Timeline"))
        tab.locator('tr', has_text="Step reached").first.wait_for()
        self.assertIn(STEP, tab.inner_text())

        # Paused with a reason and an end date, then resumed.
        end = datetime.date.today() + datetime.timedelta(days=10)
        self.button("Pause")
        wizard = self.dialog()
        wizard.locator('textarea').fill("Debiteur belt terug")
        self.fill_field(wizard, 'end_date', self.date_text(end))
        self.wizard_ok("OK")
        tab.locator('button:visible', has_text="Resume").wait_for()
        pauses = self.read('payt.pause', self.ids('payt.pause', [
                    ('item', '=', item), ('state', '=', 'active')]),
            ['end_date', 'reason'])
        self.assertEqual(
            [p['reason'] for p in pauses], ["Debiteur belt terug"])
        self.assertEqual(pauses[0]['end_date']['year'], end.year)
        self.button_until("Resume", "Pause")
        self.assertStored('payt.item', item, 'follow_up', 'active')

        # A payment plan from the invoice, 4 terms.
        self.plan_from('payt.item', item, terms=4)
        line, = self.read('payt.plan.line', self.ids('payt.plan.line', [
                    ('item', '=', item)]), ['plan'])
        self.assertEqual(len(self.ids('payt.plan.term', [
                        ('plan', '=', line['plan'])])), 4)

        # A debtor: a plan over its invoices, another one stopped.
        debtors = self.debtors_with_items(administration, 3)
        self.plan_from('payt.debtor', debtors[0], terms=3)
        plan, = self.ids('payt.plan', [('debtor', '=', debtors[0])])
        self.assertGreaterEqual(
            len(self.ids('payt.plan.line', [('plan', '=', plan)])), 2)
        self.assertEqual(
            len(self.ids('payt.plan.term', [('plan', '=', plan)])), 3)

        tab = self.open_record('payt.debtor', debtors[1])
        self.button("Stop")
        self.dialog().locator('textarea').fill("Faillissement")
        self.wizard_ok("OK")
        tab.locator('button:visible', has_text="Resume").wait_for()
        self.assertStored(
            'payt.debtor', debtors[1], 'follow_up', 'stopped')

        # The whole administration on holiday, and back.
        tab = self.open_administration(administration)
        self.button("Pause")
        self.dialog().locator('textarea').fill("Vakantie")
        self.wizard_ok("OK")
        tab.locator('button:visible', has_text="Resume").wait_for()
        self.assertStored('payt.administration', administration,
            'follow_up', 'paused')
        tab = self.open_administration(administration)
        self.button_until("Resume", "Pause")
        self.assertStored('payt.administration', administration,
            'follow_up', 'active')

        # A case: a plan, and on another its costs waived with a reason.
        cases = self.ids('payt.case', [
                ('administration', '=', administration),
                ('state', '!=', 'closed'), ('costs_waived', '=', False)])
        self.assertGreaterEqual(len(cases), 2, "the demo opens cases")
        self.plan_from('payt.case', cases[0], terms=2)
        self.assertTrue(self.ids('payt.plan.line', [
                    ('case', '=', cases[0])]))
        self.open_record('payt.case', cases[1])
        self.button("Waive Costs")
        self.dialog().locator('textarea').fill("Coulance, vaste klant")
        self.wizard_ok("Waive")
        waived, = self.read('payt.case', [cases[1]],
            ['costs_waived', 'waive_reason'])
        self.assertTrue(waived['costs_waived'])
        self.assertEqual(waived['waive_reason'], "Coulance, vaste klant")

        # Reply to the debtor's message.
        self.menu(PAYT, "Debtor Messages")
        tab = self.tab()
        self.click(tab.locator('.nav-tabs a', has_text="All"))
        row = tab.locator('tbody tr', has_text="niet ontvangen").first
        self.dblclick(row.locator('td').nth(2))
        # She reads the message before replying. (Under load a Reply clicked
        # before the form had its values once made sao save an empty form:
        # "the field Message cannot be changed".)
        self.page.wait_for_function("""() => Array.from(
            document.querySelectorAll('#tabcontent > .tab-pane.active textarea'))
            .some(e => e.value.includes('niet ontvangen'))""")
        self.button("Reply")
        self.dialog().locator('textarea:visible').last.fill(
            "We sturen de factuur vandaag opnieuw.")
        self.wizard_ok("Send")
        debtor = self.value('payt.message', message, 'debtor')
        replies = self.read('payt.message', self.ids('payt.message', [
                    ('debtor', '=', debtor), ('direction', '=', 'out')]),
            ['body', 'emailed'])
        self.assertIn("We sturen de factuur vandaag opnieuw.",
            [r['body'] for r in replies])

        # Online payments.
        self.menu(PAYT, "Online Payments")
        self.tab().locator('.nav-tabs a', has_text="All").wait_for()
        self.report("1 back office")
        take_screenshots(self, 'nl')

    def debtors_with_items(self, administration, count):
        "Debtors followed, with two or more open items outside plans."
        items = self.read('payt.item', self.ids('payt.item', [
                    ('administration', '=', administration),
                    ('state', '=', 'open'), ('open_amount', '>', 0),
                    ('case', '=', None), ('plan_lines', '=', None)]),
            ['debtor', 'follow_up'])
        per_debtor = {}
        for item in items:
            if item['follow_up'] != 'active':
                continue
            per_debtor.setdefault(item['debtor'], []).append(item['id'])
        debtors = [d for d, i in sorted(per_debtor.items()) if len(i) >= 2]
        self.assertGreaterEqual(len(debtors), count)
        return debtors[:count]

    def plan_from(self, model, record_id, terms):
        "Create Payment Plan from the Action menu of a record."
        self.open_record(model, record_id)
        self.action("Create Payment Plan")
        wizard = self.dialog()
        self.fill_field(wizard, 'number_of_terms', str(terms))
        self.wizard_ok("Create")
        self.tab().locator('label', has_text="Terms").first.wait_for()

    def test_administration_opens_unmodified(self):
        "anna and consultant: an administration opened and closed asks nothing"
        for user, language in [('anna', 'nl'), ('consultant', 'en')]:
            with self.subTest(user=user):
                self.start_journey(language, user)
                self.open_and_close_administration()
                self.report("1 administration opened and closed")

    def open_and_close_administration(self):
        administration = self.administration(ADMINISTRATION)
        panes = "document.querySelectorAll('#tabcontent > .tab-pane').length"
        before = self.page.evaluate(panes)
        tab = self.open_record('payt.administration', administration)
        tab.locator('[name="portal_link_days"]').first.wait_for(
            state='attached')
        time.sleep(1)
        self.assertFalse(tab.locator('.has-error').count(),
            "no field shown invalid")
        self.click(self.page.locator('#tablist li.active button.close'))
        self.page.wait_for_function("() => %s <= %s" % (panes, before))
        time.sleep(1)
        self.assertFalse(self.page.locator('.modal-dialog:visible').count(),
            "closing an untouched administration asks nothing")

    def test_dashboard_headers_readable(self):
        "anna at 1366x768, in Dutch and English: no column header cut off"
        self.addCleanup(self.set_language, 'en')
        self.user = 'anna'
        for language in ['nl', 'en']:
            with self.subTest(language=language):
                self.start_journey(language)
                tab = self.dashboard_tab(STEPS[language]['first'])
                self.shot('dashboard-%s' % language,
                    SHOTS.parent.parent / 'var')
                # A header's text laid out wider than its column is cut
                # off (sao paints an ellipsis over the rest).
                cut = tab.locator('thead th:visible').evaluate_all(
                    """headers => headers.filter(th => {
                        const box = th.getBoundingClientRect();
                        const walker = document.createTreeWalker(
                            th, NodeFilter.SHOW_TEXT);
                        const range = document.createRange();
                        while (walker.nextNode()) {
                            if (!walker.currentNode.data.trim()) continue;
                            range.selectNodeContents(walker.currentNode);
                            const text = range.getBoundingClientRect();
                            if (text.width && (text.right > box.right + 1
                                    || text.left < box.left - 1)) return true;
                        }
                        return false; })
                        .map(th => th.innerText.trim())""")
                self.assertEqual(cut, [], "headers cut off")
                self.report("1 dashboard read (%s)" % language)

    def test_readers_language(self):
        "anna in Dutch, then in English: tabs, timeline and attention in hers"
        self.addCleanup(self.set_language, 'en')
        self.user = 'anna'
        item = self.item_with_timeline()
        for language, reached, message in [
                ('nl', "Stap bereikt: Eerste herinnering", "Bericht van "),
                ('en', "Step reached: First reminder", "Message from ")]:
            with self.subTest(language=language):
                self.start_journey(language)
                tab = self.open_record('payt.item', item)
                tabs = [t.strip() for t in
                    tab.locator('.nav-tabs a').all_inner_texts()]
                self.assertEqual(len(tabs), len(set(tabs)),
                    "every tab has its own name: %s" % tabs)
                self.click(tab.locator('.nav-tabs a',
                        has_text=self.label('events')))
                tab.locator('tr', has_text=reached).first.wait_for()
                self.assertNotIn(STEPS['en' if language == 'nl' else 'nl'][
                        'first'], tab.inner_text())
                self.shot('timeline-%s' % language, SHOTS.parent.parent
                    / 'var')
                self.open('payt.attention')
                self.tab().locator('tr', has_text=message).first.wait_for()
                self.clicks += 2
                self.report("4 reader's language (%s)" % language)

    def test_consultant(self):
        "consultant: lead time, SMS refused without texts, preview, flows"
        self.start_journey('en', 'consultant')
        steps = {s['name']: s['id'] for s in self.read('payt.flow.step',
                self.ids('payt.flow.step', []), ['name'])}
        second, final, collection = (STEPS['en'][k]
            for k in ['second', 'final', 'collection'])

        # A step's lead time.
        tab = self.open_record('payt.flow.step', steps[second])
        self.fill_field(tab, 'lead_days', '15', loaded=True)
        self.save()
        self.assertStored('payt.flow.step', steps[second],
            'lead_days', 15)

        # SMS on a step without texts: refused, naming step and field.
        tab = self.open_record('payt.flow.step',
            steps[collection])
        tab.locator('select[name="channels"]').select_option(label="SMS")
        self.clicks += 1
        self.save()
        error = self.dialog()
        error.locator('text=%s' % collection).first.wait_for()
        self.assertIn("Templates", error.inner_text())
        self.click(error.locator('button', has_text="OK"))
        self.assertStored('payt.flow.step', steps[collection],
            'channels', [])
        # Reload: sao asks whether to save the refused SMS; not saving.
        self.click(tab.locator('button#reload:visible'))
        self.dismiss_modified()

        # Tomorrow's run previewed; Enter previews, it does not run.
        administration = self.administration(ADMINISTRATION)
        tab = self.open_administration(administration)
        self.button("Run")
        wizard = self.dialog()
        wizard.locator('[name="date"]').first.wait_for(state='attached')
        tomorrow = datetime.date.today() + datetime.timedelta(days=1)
        self.fill_field(wizard, 'date', self.date_text(tomorrow))
        self.page.keyboard.press('Enter')
        rows = wizard.locator('tbody tr', has_text=STEP)
        rows.first.wait_for(timeout=120_000)
        samples = wizard.locator('textarea[name="samples"], '
            '[name="samples"] textarea').first
        text = wizard.inner_text()
        self.assertIn(final, text)
        self.assertTrue(self.ids('payt.administration', []))
        self.assertFalse(self.ids('payt.run', [
                    ('administration', '=', administration),
                    ('date', '=', tomorrow.isoformat())]),
            "Enter previewed, it did not run")
        self.assertIn("==", samples.input_value())
        self.shot('run-preview')
        self.click(wizard.locator('.modal-footer button', has_text="Close"))
        self.wait_no_dialog()

        # The flows: which is shared by every administration, visibly.
        self.menu(PAYT, "Configuration", "Dunning Flows")
        tab = self.tab()
        tab.locator('th', has_text="Shared").wait_for()
        flows = self.read('payt.flow', self.ids('payt.flow', []),
            ['company', 'shared'])
        self.assertTrue(all(f['shared'] == (not f['company']) for f in flows))
        self.report("2 consultant")

    def test_consultant_links_package(self):
        "consultant: pastes the client's iMUIS code, a wrong one, then right"
        from payt_hub.simulators.imuis import (
            TEST_ENVIRONMENT, TEST_PARTNER_KEY, ImuisSimulator)
        imuis = ImuisSimulator(debtors=2, items=3).start()
        self.addCleanup(imuis.stop)
        # Admin's part, once per installation: Payt's partner key and, here,
        # where iMUIS answers. Nothing of it is the consultant's to enter.
        self.database.python(
            "Configuration = pool.get('payt.hub.configuration')\n"
            "Configuration.write([Configuration(1)], {\n"
            "    'imuis_partner_key_masked': %r,\n"
            "    'imuis_url_override': %r})" % (TEST_PARTNER_KEY, imuis.url),
            lock_tables=['payt_hub_configuration'])
        self.start_journey('en', 'consultant')
        administration = self.administration(ADMINISTRATION)

        self.menu(PAYT, "Configuration", "Accounting Package Links")
        self.tab().locator('th', has_text="Package").first.wait_for()
        self.click(self.tab().locator('button#new_:visible').first)
        tab = self.tab()
        # Sao asks which administration is meant, with the one found.
        self.fill_field(tab, 'administration', ADMINISTRATION)
        search = self.dialog()
        self.click(search.locator('tr', has_text=ADMINISTRATION).first)
        self.wizard_ok("OK")
        tab.locator('select[name="package"]').select_option(
            label="iMUIS Online")
        self.clicks += 1
        # A mistyped code first: refused with what to do, nothing activated.
        self.fill_field(tab, 'environment_code_masked', '99999')
        self.button("Activate")
        error = self.dialog()
        error.locator('text=MUIS Apps').first.wait_for()
        self.assertIn("environment code", error.inner_text())
        self.assertNotIn("99999", error.inner_text())
        self.click(error.locator('button', has_text="OK"))
        links = self.ids('payt.hub.link', [
                ('administration', '=', administration)])
        self.assertEqual(len(links), 1, "the link was saved as a draft")
        link, = links
        self.assertStored('payt.hub.link', link, 'state', 'draft')

        logins = imuis.logins
        self.fill_field(tab, 'environment_code_masked', TEST_ENVIRONMENT)
        self.button("Activate")
        self.assertStored('payt.hub.link', link, 'state', 'active')
        self.assertGreater(imuis.logins, logins, "a real login to iMUIS")
        self.shot('package-linked')
        self.report("2 consultant links a package")
