# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Letters as PDF (reportlab): one letter per debtor covering several
items, in Dutch or English.

`render_letter(LetterContent)` knows nothing of Tryton, so dunning letters
by post can use it too; `case_letter_content` fills it for a case letter.
PDFs are rendered 'invariant' (no timestamp, fixed id) so the same letter
gives the same bytes, which keeps the dossier reproducible.
"""
import dataclasses
import datetime
import io
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle)
from xml.sax.saxutils import escape

from .payment_data import LABELS as PAYMENT_LABELS, PaymentData

LABELS = {
    'nl': {
        'date': "Datum", 'reference': "Kenmerk", 'invoice': "Factuur",
        'debtor': "Debiteur", 'case': "Dossier",
        'invoice_date': "Factuurdatum", 'due_date': "Vervaldatum",
        'amount': "Bedrag", 'open': "Openstaand", 'regards':
        "Met vriendelijke groet,", 'dear': "Geachte %s,",
        'principal': "Hoofdsom", 'costs': "Buitengerechtelijke incassokosten",
        'interest': "Wettelijke rente", 'paid': "Reeds betaald",
        'total': "Totaal te voldoen",
        },
    'en': {
        'date': "Date", 'reference': "Reference", 'invoice': "Invoice",
        'debtor': "Debtor", 'case': "Case",
        'invoice_date': "Invoice date", 'due_date': "Due date",
        'amount': "Amount", 'open': "Open", 'regards': "Kind regards,",
        'dear': "Dear %s,", 'principal': "Principal",
        'costs': "Extrajudicial collection costs",
        'interest': "Statutory interest", 'paid': "Already paid",
        'total': "Total to pay",
        },
    }


@dataclasses.dataclass
class LetterLine:
    number: str
    invoice_date: datetime.date | None
    due_date: datetime.date
    amount: Decimal
    open_amount: Decimal


@dataclasses.dataclass
class LetterContent:
    sender: str
    sender_lines: list
    recipient: str
    recipient_lines: list
    date: datetime.date
    language: str
    subject: str
    paragraphs: list            # plain text, one per paragraph
    lines: list                 # LetterLine, one per invoice
    totals: list                # (label, Decimal)
    reference: str = ''
    currency: str = 'EUR'
    # The language's date format of the back office (ir.lang), so a letter
    # writes dates as everything else the debtor reads.
    date_format: str = '%d-%m-%Y'
    payment: PaymentData | None = None


def format_money(amount, currency='EUR', language='nl'):
    "EUR 1.234,56 in Dutch, EUR 1,234.56 in English."
    text = '{:,.2f}'.format(amount)
    if language == 'nl':
        text = text.translate(str.maketrans(',.', '.,'))
    return '%s %s' % (currency, text)


def format_date(date, date_format='%d-%m-%Y'):
    if not date:
        return ''
    return date.strftime(date_format)


def render_letter(content):
    "The letter as PDF bytes."
    labels = LABELS[content.language]
    styles = getSampleStyleSheet()
    normal, bold = styles['Normal'], styles['Heading4']
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, invariant=1,
        leftMargin=25 * mm, rightMargin=20 * mm, topMargin=20 * mm,
        bottomMargin=20 * mm, title=content.subject,
        author=content.sender, lang=content.language)

    def para(text, style=normal):
        return Paragraph(escape(text).replace('\n', '<br/>'), style)

    story = [para('\n'.join([content.sender] + content.sender_lines)),
        Spacer(1, 12 * mm),
        para('\n'.join([content.recipient] + content.recipient_lines)),
        Spacer(1, 10 * mm),
        para('%s: %s' % (labels['date'],
                format_date(content.date, content.date_format)))]
    if content.reference:
        story.append(para('%s: %s' % (labels['reference'],
                    content.reference)))
    story += [Spacer(1, 6 * mm), para(content.subject, bold),
        para(labels['dear'] % content.recipient), Spacer(1, 3 * mm)]
    money = lambda a: format_money(a, content.currency, content.language)
    rows = [[labels['invoice'], labels['invoice_date'], labels['due_date'],
            labels['amount'], labels['open']]]
    rows += [[l.number, format_date(l.invoice_date, content.date_format),
            format_date(l.due_date, content.date_format), money(l.amount),
            money(l.open_amount)] for l in content.lines]
    rows += [[label, '', '', '', money(amount)]
        for label, amount in content.totals]
    table = Table(rows, repeatRows=1, hAlign='LEFT')
    table.setStyle(TableStyle([
                ('FONTNAME', (0, 0), (-1, 0), 'Helvetica-Bold'),
                ('LINEBELOW', (0, 0), (-1, 0), 0.5, colors.black),
                ('ALIGN', (3, 0), (-1, -1), 'RIGHT'),
                ('LINEABOVE', (0, len(content.lines) + 1), (-1,
                        len(content.lines) + 1), 0.5, colors.black),
                ('FONTNAME', (0, -1), (-1, -1), 'Helvetica-Bold'),
                ]))
    paragraphs = [para(p) for p in content.paragraphs]
    story += paragraphs[:1] + [Spacer(1, 3 * mm), table,
        Spacer(1, 4 * mm)]
    for paragraph in paragraphs[1:]:
        story += [paragraph, Spacer(1, 2 * mm)]
    if content.payment:
        story += [Spacer(1, 2 * mm)] + _payment_block(
            content.payment, content.language, money, para)
    story += [Spacer(1, 6 * mm), para(labels['regards']),
        para(content.sender)]
    doc.build(story)
    return buffer.getvalue()


def _payment_block(payment, language, money, para):
    "IBAN, name, reference, amount and link, beside the EPC QR code."
    labels = PAYMENT_LABELS.get(language, PAYMENT_LABELS['en'])
    rows = [[labels['amount'], money(payment.amount)]]
    if payment.iban:
        rows += [[labels['iban'], payment.iban_display],
            [labels['beneficiary'], payment.beneficiary],
            [labels['reference'], payment.reference]]
    rows.append([labels['link'], para(payment.link)])
    details = Table(rows, colWidths=[38 * mm, 82 * mm], hAlign='LEFT')
    details.setStyle(TableStyle([
                ('FONTNAME', (0, 0), (0, -1), 'Helvetica-Bold'),
                ('VALIGN', (0, 0), (-1, -1), 'TOP'),
                ]))
    png = payment.epc_qr_png()
    if not png:
        return [details]
    code = Image(io.BytesIO(png), width=36 * mm, height=36 * mm)
    block = Table([[details, [code, para(labels['qr'], small_style())]]],
        colWidths=[122 * mm, 40 * mm], hAlign='LEFT')
    block.setStyle(TableStyle([('VALIGN', (0, 0), (-1, -1), 'TOP')]))
    return [block]


def small_style():
    style = getSampleStyleSheet()['Normal'].clone('small')
    style.fontSize, style.leading = 7, 9
    return style


# ----------------------------------------------------------- case letters

TEXTS = {
    ('reminder', 'consumer', 'nl'): (
        "Aanmaning: laatste gelegenheid om kosteloos te betalen",
        ["Ondanks eerdere herinneringen staan de onderstaande facturen nog "
            "open.",
            "Wij verzoeken u het totaalbedrag van {total} te betalen "
            "{wording}.",
            "Betaalt u niet binnen die termijn, dan bent u "
            "buitengerechtelijke incassokosten verschuldigd van {costs}"
            "{maximum} (Besluit vergoeding voor buitengerechtelijke "
            "incassokosten, over de opgetelde hoofdsom), vermeerderd met "
            "de wettelijke rente (art. 6:119 BW).{vat}"]),
    ('reminder', 'consumer', 'en'): (
        "Reminder: last opportunity to pay without costs",
        ["Despite earlier reminders the invoices below are still open.",
            "We ask you to pay the total of {total} {wording}.",
            "If you do not pay within that term, you owe extrajudicial "
            "collection costs of {costs}{maximum} (Dutch Decree on "
            "extrajudicial collection costs, over the principals added "
            "up), plus statutory interest (art. 6:119 Dutch Civil "
            "Code).{vat}"]),
    ('reminder', 'business', 'nl'): (
        "Aanmaning",
        ["De onderstaande facturen zijn ondanks herinneringen niet "
            "betaald. U bent in verzuim.",
            "Wij verzoeken u het totaalbedrag van {total} binnen veertien "
            "dagen te betalen. Het bedrag omvat de buitengerechtelijke "
            "incassokosten (art. 6:96 BW) en de wettelijke handelsrente "
            "(art. 6:119a BW) tot vandaag."]),
    ('reminder', 'business', 'en'): (
        "Reminder",
        ["The invoices below are unpaid despite reminders; you are in "
            "default.",
            "Please pay the total of {total} within fourteen days. It "
            "includes the extrajudicial collection costs (art. 6:96 Dutch "
            "Civil Code) and statutory commercial interest (art. 6:119a) "
            "up to today."]),
    ('second_reminder', None, 'nl'): (
        "Tweede aanmaning",
        ["Wij hebben uw betaling van de onderstaande facturen niet "
            "ontvangen.",
            "Wij verzoeken u het totaalbedrag van {total} binnen zeven "
            "dagen te betalen. De wettelijke rente loopt door tot de dag "
            "van betaling."]),
    ('second_reminder', None, 'en'): (
        "Second reminder",
        ["We have not received your payment of the invoices below.",
            "Please pay the total of {total} within seven days. Statutory "
            "interest runs until the day of payment."]),
    ('notice_of_default', None, 'nl'): (
        "Sommatie en ingebrekestelling",
        ["U heeft de onderstaande facturen ondanks aanmaningen niet "
            "betaald.",
            "Wij sommeren u het totaalbedrag van {total} binnen zeven "
            "dagen te betalen. Doet u dat niet, dan dragen wij de vordering "
            "zonder nadere aankondiging over aan een gerechtsdeurwaarder; "
            "de kosten van een gerechtelijke procedure komen dan voor uw "
            "rekening."]),
    ('notice_of_default', None, 'en'): (
        "Final demand and notice of default",
        ["You have not paid the invoices below despite reminders.",
            "We demand payment of the total of {total} within seven days. "
            "Otherwise we hand the claim over to a bailiff without further "
            "notice; the costs of court proceedings will then be yours."]),
    }
VAT_TEXT = {
    'nl': " Wij schakelen een derde in die btw in rekening brengt en "
    "kunnen die btw niet verrekenen; daarom zijn de incassokosten "
    "verhoogd met {rate}% btw.",
    'en': " We use a third party that charges VAT which we cannot deduct; "
    "the collection costs are therefore increased by {rate}% VAT.",
    }
MAXIMUM_TEXT = {
    'nl': " (wettelijk maximum: {maximum})",
    'en': " (statutory maximum: {maximum})",
    }


def case_letter_content(letter):
    "The content of a payt.case.letter, from what the letter stored."
    import json

    from trytond.pool import Pool

    from .communication import date_format
    case = letter.case
    debtor = case.debtor
    language = letter.language if letter.language in LABELS else 'en'
    labels = LABELS[language]
    currency = case.currency.code
    money = lambda a: format_money(a, currency, language)
    kind = case.debtor_kind if letter.step == 'reminder' else None
    subject, texts = TEXTS[(letter.step, kind, language)]
    inputs = json.loads(letter.inputs or '{}')
    vat_rate = (inputs.get('costs') or {}).get('vat_rate')
    values = {
        'total': money(letter.total_stated),
        'wording': letter.wording,
        'costs': money(letter.costs_stated or 0),
        'maximum': (MAXIMUM_TEXT[language].format(
                maximum=money(letter.costs_maximum))
            if letter.costs_maximum and (letter.costs_stated or 0)
            < letter.costs_maximum else ''),
        'vat': VAT_TEXT[language].format(rate=vat_rate) if vat_rate else '',
        }
    balances = inputs.get('balances', {})
    remaining = balances.get('remaining', {})
    totals = [(labels['principal'], letter.principal)]
    if Decimal(remaining.get('costs', '0')):
        totals.append((labels['costs'], Decimal(remaining['costs'])))
    totals.append((labels['interest'], letter.interest_stated or 0))
    totals.append((labels['total'], letter.total_stated))
    company = case.company
    address = company.party.addresses[0] if (
        getattr(company.party, 'addresses', None)) else None
    sender_lines = [l for l in (address.full_address.splitlines()
            if address else []) if l]
    principals = case.item_principals()
    return LetterContent(
        sender=company.rec_name, sender_lines=sender_lines,
        recipient=debtor.name,
        recipient_lines=[l for l in [debtor.street, ' '.join(
                        filter(None, [debtor.postal_code, debtor.city]))]
            if l],
        date=letter.date, language=language,
        subject=subject, reference='%s %s' % (labels['case'], case.id),
        date_format=date_format(language),
        payment=case.administration.payment_data(debtor,
            ['%s %s' % (labels['case'], case.id)], letter.total_stated,
            Pool().get('payt.portal.link').url_for(debtor)),
        paragraphs=[t.format(**values) for t in texts],
        lines=[LetterLine(i.number or i.external_id, i.invoice_date,
                i.due_date, i.amount, principals.get(i, i.case_principal))
            for i in sorted(case.items, key=lambda i: i.due_date)],
        totals=totals, currency=currency)
