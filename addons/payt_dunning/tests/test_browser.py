# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The web client in a real browser: Debian's Chromium, headless, driven by
Playwright against a real trytond serving sao on a fresh database with the
demo data of `payt demo`.

Logs in, opens an administration's dashboard, opens a step and an item from
it, reads its timeline, pauses it with a reason, sees it leave the step's
count, opens its debtor, resumes; and photographs the dashboards (per-step
counts and amounts, ageing, DSO over time, attention) into
docs/screenshots/ for the README."""
import base64
import json
import os
import pathlib
import re
import socket
import subprocess
import time
import unittest
import urllib.request

from aiosmtpd.controller import Controller
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from trytond.pyson import PYSONDecoder

from .test_server import BIN, Database, MailSink, free_port

REPO = pathlib.Path(__file__).resolve().parents[3]
# Screenshots go to var/screenshots; `make screenshots` points this at
# docs/screenshots to retake the README's (a test run changes no tracked file).
SHOTS = pathlib.Path(os.environ.get('PAYT_SCREENSHOTS')
    or REPO / 'var' / 'screenshots')
LOGIN_TIMEOUT = 120_000
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu',
    '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync']
# demo.py: the consultant may pause and resume (anna only reads).
USER, PASSWORD = 'consultant', 'payt-demo-2026'
ADMINISTRATION = "Bakkerij De Korenschoof BV"
STEP = 'First reminder'   # the default flow's step, as English reads it
TIMEOUT = 30000


# Whether an element lies within the box of what scrolls it (a list's
# columns beyond its right edge are cut off).
IN_VIEW = """element => {
    let box = element.parentElement;
    while (box && getComputedStyle(box).overflowX === 'visible') {
        box = box.parentElement;
    }
    const inner = element.getBoundingClientRect();
    const outer = (box || document.body).getBoundingClientRect();
    return inner.left >= outer.left - 1 && inner.right <= outer.right + 1;
}"""


class SaoBrowser:
    """A demo database, a trytond serving sao and Chromium, once per test
    class; JSON-RPC and page helpers. Mixed into a unittest.TestCase."""
    user, password = USER, PASSWORD
    viewport = {'width': 1280, 'height': 800}

    _demo = None  # the demo built once per test process, then copied

    @classmethod
    def _demo_database(cls):
        if SaoBrowser._demo is not None:
            return Database(template=SaoBrowser._demo)
        database = Database()
        database.run([os.path.join(BIN, 'payt'), 'demo', '-d',
                database.name], extra={
                'TRYTOND_EMAIL__URI': 'smtp://127.0.0.1:%s' % cls.smtp.port})
        SaoBrowser._demo = database.snapshot()
        return database

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        subprocess.run([str(REPO / 'scripts' / 'fetch-sao.sh')], check=True,
            capture_output=True, timeout=600)
        # The demo's reminder emails land in a local SMTP server.
        cls.smtp = Controller(MailSink(), hostname='127.0.0.1', port=free_port())
        cls.smtp.start()
        cls.database = cls._demo_database()
        cls.port = free_port()
        cls.base = 'http://127.0.0.1:%s' % cls.port
        # Replies to debtors are emailed: to the same local SMTP server.
        cls.server = subprocess.Popen([os.path.join(BIN, 'trytond'),
                '-d', cls.database.name],
            env=dict(cls.database.env,
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % cls.port,
                TRYTOND_WEB__ROOT=str(REPO / 'var' / 'sao'),
                TRYTOND_EMAIL__URI='smtp://127.0.0.1:%s' % cls.smtp.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(150):
            try:
                socket.create_connection(('127.0.0.1', cls.port), 1).close()
                break
            except OSError:
                time.sleep(0.2)
        cls.sessions = {}
        cls.playwright = sync_playwright().start()
        cls.browser = cls.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        SHOTS.mkdir(parents=True, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.playwright.stop()
        cls.server.terminate()
        cls.server.wait(10)
        cls.smtp.stop()
        cls.database.drop()
        super().tearDownClass()

    # -- JSON-RPC, to find ids and check what the screens say ---------------
    @classmethod
    def _call(cls, method, params, session=None):
        request = urllib.request.Request(
            '%s/%s/rpc/' % (cls.base, cls.database.name),
            data=json.dumps({'id': 1, 'method': method,
                    'params': list(params)}).encode(),
            headers={'Content-Type': 'application/json'})
        if session:
            request.add_header('Authorization', 'Session ' + session)
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        if 'error' in answer:
            raise AssertionError(answer['error'])
        return answer['result']

    def rpc(self, method, *params):
        "Call as the test's user (self.user)."
        sessions = type(self).sessions
        if self.user not in sessions:
            user_id, key = self._call('common.db.login',
                [self.user, {'password': self.password}, 'en'])[:2]
            session = base64.b64encode(('%s:%s:%s' % (
                        self.user, user_id, key)).encode()).decode()
            sessions[self.user] = session, self._call(
                'model.res.user.get_preferences', [True, {}], session)
        session, self.context = sessions[self.user]
        return self._call(method, params, session)

    def search(self, model, domain):
        self.rpc('model.res.user.get_preferences', True, {})
        return self.rpc('model.%s.search' % model, domain, 0, None, None,
            self.context)

    def read(self, model, ids, fields):
        self.rpc('model.res.user.get_preferences', True, {})
        return self.rpc('model.%s.read' % model, ids, fields, self.context)

    # -- the browser -------------------------------------------------------
    def setUp(self):
        self.page = self.browser.new_page(viewport=self.viewport)
        self.page.set_default_timeout(TIMEOUT)
        self.addCleanup(lambda: self.page.close())
        # The last screen, for whoever reads a failure.
        self.addCleanup(lambda: self.page.screenshot(
                path=os.path.join(self.database.folder, '..',
                    'payt-browser-%s.png' % self._testMethodName)))
        self.login()

    def fresh(self):
        "A new page, as after closing the browser: nothing cached."
        self.page.close()
        self.page = self.browser.new_page(viewport=self.viewport)
        self.page.set_default_timeout(TIMEOUT)
        self.login()

    def login(self):
        "Log in as a person does; the first login of a busy machine is slow."
        page = self.page
        page.goto('%s/#%s' % (self.base, self.database.name))
        page.fill('#login', self.user, timeout=LOGIN_TIMEOUT)
        password = page.locator('input[type=password]')
        # A click that lands before sao has bound its handler does nothing:
        # click again until the password prompt shows.
        for attempt in range(4):
            page.click('.login-dialog button[type=submit]')
            try:
                password.wait_for(timeout=LOGIN_TIMEOUT // 4)
                break
            except PlaywrightTimeout:
                continue
        password.fill(self.password)
        page.keyboard.press('Enter')
        page.wait_for_selector('#user-preferences a', state='attached',
            timeout=LOGIN_TIMEOUT)
        # The demo users' home screen (their dashboard) opens first.
        page.wait_for_selector('#tabcontent > .tab-pane', state='attached',
            timeout=LOGIN_TIMEOUT)

    def administration(self, name=ADMINISTRATION):
        ids = self.search('payt.administration', [])
        for record in self.read('payt.administration', ids, ['rec_name']):
            if record['rec_name'] == name:
                return record['id']
        self.fail("no administration %s" % name)

    def open(self, model, res_id=None, views=None, name=None, domain=None):
        "Open a screen by its URL, as a bookmark does."
        url = '%s/#%s/model/%s' % (self.base, self.database.name, model)
        if res_id:
            url += '/%s' % res_id
        params = []
        if views:
            params.append('views=%s' % urllib.request.quote(json.dumps(views)))
        if name:
            params.append('name=%s' % urllib.request.quote(json.dumps(name)))
        if domain:
            params.append('domain=%s' % urllib.request.quote(
                    json.dumps(domain)))
        if params:
            url += ';' + '&'.join(params)
        active = "document.querySelector('#tabcontent > .tab-pane.active')"
        before = self.page.evaluate("() => { const p = %s;"
            " return p ? p.id : null; }" % active)
        self.page.goto(url)
        # Until the screen's own tab is in front: the tab in front before
        # may show what the test looks for too. (Sao brings an open tab of
        # the same screen to the front instead, which may be that one.)
        try:
            self.page.wait_for_function("(before) => { const p = %s;"
                " return p && p.id !== before; }" % active, arg=before,
                timeout=15000)
        except PlaywrightTimeout:
            pass

    def shot(self, name, folder=SHOTS):
        time.sleep(0.5)   # let the last animation end
        self.page.screenshot(path=str(folder / ('%s.png' % name)))

    def tab(self):
        "The active tab's content."
        return self.page.locator('#tabcontent > .tab-pane.active')

    def field(self, scope, label):
        "The value of a form field, found by its label."
        target = scope.locator('label', has_text=label).first.get_attribute(
            'for')
        return self.page.evaluate(
            "(id) => { const e = document.getElementById(id);"
            " return (e.value !== undefined ? e.value : e.innerText).trim(); }",
            target)

    def dialog(self):
        return self.page.locator('.modal-dialog:visible').last


class BrowserTestCase(SaoBrowser, unittest.TestCase):
    "Sao in Chromium"

    def open_step(self):
        "From the administration's dashboard, open the step's figures."
        tab = self.tab()
        cell = tab.locator('tr', has_text=STEP).first.locator(
            'td', has_text=STEP).first
        button = tab.locator('button[title="Open"]:visible').first
        for _ in range(10):
            # A click selects the row, or unselects a row still selected.
            cell.click()
            try:
                button.click(timeout=2000)
                break
            except Exception:
                continue
        dialog = self.dialog()
        dialog.locator('label', has_text="Being Followed:").wait_for()
        dialog.locator('tbody tr', has_text='-').first.wait_for()
        return dialog

    def followed(self, dialog):
        return int(self.field(dialog, "Being Followed:"))

    def test_dashboard_item_pause_resume(self):
        "Dashboard, step, item, timeline, pause, count, debtor, resume"
        page = self.page
        administration = self.administration()
        self.open('payt.administration', administration)
        self.tab().locator('tr', has_text=STEP).first.wait_for()
        self.shot('administration-dashboard')
        # Every figure of the step list in view, not scrolled off its side.
        for header in ["Items", "Amount", "Attention"]:
            self.assertTrue(self.tab().locator('th:visible',
                    has_text=header).first.evaluate(IN_VIEW), header)

        dialog = self.open_step()
        followed = self.followed(dialog)
        self.assertGreater(followed, 1)
        # The demo's invoice numbers: 2026-00038.
        number = re.search(r'\b\d{4}-\d{5}\b', dialog.locator(
                'tbody tr', has_text='-').first.inner_text()).group()
        self.shot('step-items')
        dialog.locator('button', has_text='Close').click()

        item, = self.search('payt.item', [('number', '=', number)])
        self.open('payt.item', item)
        tab = self.tab()
        tab.locator('.nav-tabs a', has_text='Timeline').click()
        timeline = tab.locator('tr', has_text='Step reached')
        timeline.first.wait_for()
        self.assertIn(STEP, tab.inner_text())
        self.shot('item-timeline')

        tab.locator('button:visible', has_text='Pause').click()
        wizard = self.dialog()
        wizard.locator('textarea').fill("Debiteur belt terug over de factuur")
        wizard.locator('button', has_text='OK').click()
        tab.locator('button:visible', has_text='Resume').wait_for()
        page.wait_for_function(
            "() => !document.querySelector('.modal-dialog')"
            " || !document.querySelector('.modal-dialog').offsetParent")
        follow_up, = self.read('payt.item', [item], ['follow_up'])
        self.assertEqual(follow_up['follow_up'], 'paused')
        tab.locator('.nav-tabs a', has_text='Pauses').click()
        # The timeline's row says it too, hidden behind its tab.
        tab.locator('tr:visible', has_text='belt terug').first.wait_for()
        self.shot('item-paused')

        # The item leaves the step's count.
        self.fresh()
        self.open('payt.administration', administration)
        dialog = self.open_step()
        self.assertEqual(self.followed(dialog), followed - 1)
        self.assertNotIn(number, dialog.inner_text())
        dialog.locator('button', has_text='Close').click()

        # Its debtor, then resume.
        debtor = self.read('payt.item', [item], ['debtor'])[0]['debtor']
        self.open('payt.debtor', debtor)
        name = self.read('payt.debtor', [debtor], ['rec_name'])[0]['rec_name']
        tab = self.tab()
        tab.locator('.nav-tabs a', has_text='Open Items').first.click()
        tab.locator('tr', has_text=number).first.wait_for()
        self.assertEqual(self.field(tab, "Name:"), name)
        self.shot('debtor')
        self.open('payt.item', item)
        tab = self.tab()
        tab.locator('button:visible', has_text='Resume').click()
        tab.locator('button:visible', has_text='Pause').wait_for()
        follow_up, = self.read('payt.item', [item], ['follow_up'])
        self.assertEqual(follow_up['follow_up'], 'active')
        self.fresh()
        self.open('payt.administration', administration)
        dialog = self.open_step()
        self.assertEqual(self.followed(dialog), followed)

    def graph(self, model, name, shot, title):
        "Open a model's graph view and wait for the chart to be drawn."
        view, = self.search('ir.ui.view', [
                ('model', '=', model), ('type', '=', 'graph'),
                ('name', '=', name)])
        self.open(model, views=[view], name=title, domain=[
                ('administration', '=', self.administration())])
        self.tab().locator('svg, canvas').first.wait_for()
        self.shot(shot)

    def test_dashboard_graphs(self):
        "Counts and amounts per step, ageing, DSO over time, attention"
        snapshots = self.search('payt.dso.snapshot', [])
        self.assertGreater(len(snapshots), 30, "the demo's runs wrote DSO")
        values = self.read('payt.dso.snapshot', snapshots, ['dso'])
        # Decimals come over JSON-RPC as {"__class__": "Decimal", ...}.
        self.assertTrue(any(float(v['dso']['decimal']) > 0 for v in values))
        self.graph('payt.dashboard.step', 'dashboard_step_graph_count',
            'graph-step-count', "Open Items per Step")
        self.graph('payt.dashboard.step', 'dashboard_step_graph_amount',
            'graph-step-amount', "Open Amount per Step")
        self.graph('payt.dashboard.ageing', 'dashboard_ageing_graph',
            'graph-ageing', "Ageing")
        self.graph('payt.dso.snapshot', 'dso_snapshot_graph', 'graph-dso',
            "DSO over Time")
        # The attention list with a tab (filter) per reason, as its action
        # opens it.
        action, = self.search('ir.action.act_window', [
                ('res_model', '=', 'payt.attention'),
                ('name', '=', "Points of Attention")])
        tabs = self.read('ir.action.act_window.domain', self.search(
                'ir.action.act_window.domain',
                [('act_window', '=', action)]),
            ['name', 'domain', 'count', 'sequence'])
        tabs.sort(key=lambda t: t['sequence'])
        names = [t['name'] for t in tabs]
        for reason in ["Email undeliverable", "Letter returned"]:
            self.assertIn(reason, names)
        tab_domain = [[t['name'], PYSONDecoder().decode(t['domain']),
                t['count']] for t in tabs]
        self.page.goto('%s/#%s/model/payt.attention;tab_domain=%s&name=%s' % (
                self.base, self.database.name,
                urllib.request.quote(json.dumps(tab_domain)),
                urllib.request.quote(json.dumps("Points of Attention"))))
        self.tab().locator('.nav-tabs a', has_text="Letter returned").first\
            .wait_for()
        self.shot('attention')
