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

# The paragraphs of each case letter (step, debtor kind): messages
# msg_case_letter_<step>[_<kind>]_subject and _1, _2 ..., Dutch in
# locale/nl.po.
PARAGRAPHS = {('reminder', 'consumer'): 3, ('reminder', 'business'): 2,
    ('second_reminder', None): 2, ('notice_of_default', None): 2}


def case_letter_texts(step, kind, language):
    "(subject, paragraphs) of a case letter in the language."
    from trytond.i18n import gettext
    prefix = 'payt_dunning.msg_case_letter_' + '_'.join(
        filter(None, [step, kind]))
    return (gettext(prefix + '_subject', language),
        [gettext('%s_%s' % (prefix, n), language)
            for n in range(1, PARAGRAPHS[(step, kind)] + 1)])


def case_letter_content(letter):
    "The content of a payt.case.letter, from what the letter stored."
    import json

    from trytond.i18n import gettext
    from trytond.pool import Pool

    from .communication import date_format
    case = letter.case
    debtor = case.debtor
    language = letter.language if letter.language in LABELS else 'en'
    labels = LABELS[language]
    currency = case.currency.code
    money = lambda a: format_money(a, currency, language)
    kind = case.debtor_kind if letter.step == 'reminder' else None
    subject, texts = case_letter_texts(letter.step, kind, language)
    inputs = json.loads(letter.inputs or '{}')
    vat_rate = (inputs.get('costs') or {}).get('vat_rate')
    values = {
        'total': money(letter.total_stated),
        'wording': letter.wording,
        'costs': money(letter.costs_stated or 0),
        'maximum': (gettext('payt_dunning.msg_case_letter_maximum',
                language).format(maximum=money(letter.costs_maximum))
            if letter.costs_maximum and (letter.costs_stated or 0)
            < letter.costs_maximum else ''),
        'vat': gettext('payt_dunning.msg_case_letter_vat', language).format(
            rate=vat_rate) if vat_rate else '',
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
