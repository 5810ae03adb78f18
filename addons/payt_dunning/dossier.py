# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The bailiff's dossier of a case: one ZIP holding a PDF summary, every
letter sent (with its send and receipt dates), the invoices, the cost and
interest computations, the payments, and dossier.json with the same data
machine-readable."""
import io
import json
import zipfile
from decimal import Decimal

from trytond.pool import Pool

from . import law
from .letter import LetterContent, LetterLine, render_letter

# Fixed timestamp inside the ZIP: the same case gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _loads(text):
    return json.loads(text) if text else None


def dossier_data(case, date):
    "Everything the dossier holds, JSON-ready."
    balances = case.balances()
    principals = case.item_principals()
    return {
        'format': 'payt-dossier/1',
        'date': date.isoformat(),
        'case': {
            'id': case.id, 'state': case.state, 'opened': case.date,
            'administration': case.administration.rec_name,
            'currency': case.currency.code,
            'principal': case.principal,
            'costs_waived': case.costs_waived,
            'waive_reason': case.waive_reason,
            },
        'debtor': {
            'name': case.debtor.name, 'kind': case.debtor_kind,
            'external_id': case.debtor.external_id,
            'street': case.debtor.street,
            'postal_code': case.debtor.postal_code,
            'city': case.debtor.city, 'country': case.debtor.country,
            'email': case.debtor.email,
            'coc_number': case.debtor.coc_number,
            },
        'invoices': [{
                'number': i.number, 'external_id': i.external_id,
                'invoice_date': i.invoice_date, 'due_date': i.due_date,
                'amount': i.amount, 'principal_handed_over': i.case_principal,
                'principal_due': principals.get(i),
                'description': i.description,
                } for i in sorted(case.items, key=lambda i: i.due_date)],
        'letters': [{
                'step': l.step, 'file': 'letters/%s' % l.pdf_name,
                'sent': l.date, 'channel': l.channel,
                'received': l.receipt_date, 'fourteen_day_letter':
                l.fourteen_day, 'term_end': l.term_end,
                'costs_chargeable_from': l.costs_chargeable_from,
                'wording': l.wording, 'principal': l.principal,
                'costs_stated': l.costs_stated,
                'costs_maximum': l.costs_maximum,
                'interest_stated': l.interest_stated,
                'total_stated': l.total_stated,
                'computation': _loads(l.inputs),
                } for l in case.letters],
        'costs': [{
                'date': c.date, 'state': c.state, 'principal': c.principal,
                'costs': c.costs, 'vat': c.vat_amount, 'total': c.total,
                'rule': c.rule, 'computation': _loads(c.inputs),
                } for c in case.costs],
        'interest': [{
                'invoice': l.item.number or l.item.external_id,
                'kind': l.kind, 'principal': l.principal,
                'from': l.start, 'up_to_exclusive': l.end,
                'amount': l.amount, 'rule': l.rule,
                'rates': _loads(l.rates), 'warnings': l.warnings,
                'computation': _loads(l.inputs),
                } for l in case.interests],
        'payments': [{
                'date': p.date, 'amount': p.amount,
                'to_costs': p.to_costs, 'to_interest': p.to_interest,
                'to_principal': p.to_principal,
                'overpayment': p.overpayment, 'rule': p.rule,
                } for p in case.payments],
        'balance': {
            'costs': balances['costs'], 'interest': balances['interest'],
            'paid': balances['paid'], 'remaining': balances['remaining'],
            'total_due': balances['total'],
            },
        }


def _summary_pdf(case, data, date):
    "A one-page overview as a letter addressed to the file."
    language = 'nl' if case.debtor.language == 'nl' else 'en'
    nl = language == 'nl'
    remaining = data['balance']['remaining']
    totals = [
        ("Hoofdsom" if nl else "Principal", remaining['principal']),
        ("Incassokosten" if nl else "Collection costs", remaining['costs']),
        ("Rente" if nl else "Interest", remaining['interest']),
        ("Totaal" if nl else "Total due", data['balance']['total_due']),
        ]
    paragraphs = [
        ("Dossier voor de gerechtsdeurwaarder. Debiteur: %s (%s)."
            if nl else "Dossier for the bailiff. Debtor: %s (%s).") % (
            case.debtor.name, case.debtor_kind),
        ]
    for letter in case.letters:
        paragraphs.append(("Brief %s verzonden %s per %s, ontvangen %s%s."
                if nl else "Letter %s sent %s by %s, received %s%s.") % (
                letter.step, letter.date, letter.channel,
                letter.receipt_date,
                (" (14-dagenbrief, termijn tot en met %s)" if nl
                    else " (14-day letter, term up to %s)") % letter.term_end
                if letter.fourteen_day else ''))
    for cost in case.costs:
        paragraphs.append("%s: %s %s (%s)" % (
                "Kosten" if nl else "Costs", cost.total, cost.state,
                cost.rule))
    for line in case.interests:
        paragraphs.append("%s %s: %s %s - %s: %s (%s)" % (
                "Rente" if nl else "Interest", line.item.rec_name,
                line.principal, line.start, line.end, line.amount,
                line.rule))
    for payment in case.payments:
        paragraphs.append("%s %s: %s (%s / %s / %s; %s)" % (
                "Betaling" if nl else "Payment", payment.date,
                payment.amount, payment.to_costs, payment.to_interest,
                payment.to_principal, law.RULE_ALLOCATION))
    content = LetterContent(
        sender=case.company.rec_name, sender_lines=[],
        recipient=case.debtor.name, recipient_lines=[], date=date,
        language=language,
        subject=("Dossier %s" if nl else "Case file %s") % case.id,
        paragraphs=paragraphs,
        lines=[LetterLine(i['number'] or i['external_id'],
                i['invoice_date'], i['due_date'], i['amount'],
                i['principal_due']) for i in data['invoices']],
        totals=totals, currency=case.currency.code)
    return render_letter(content)


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, 'isoformat'):
        return value.isoformat()
    raise TypeError(repr(value))


def build_dossier(case, date):
    "The ZIP as bytes."
    Attachment = Pool().get('ir.attachment')
    data = dossier_data(case, date)
    invoices = Attachment.search([('resource', 'in',
                [str(i) for i in case.items])])
    data['invoice_files'] = ['invoices/%s' % a.name for a in invoices]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
        def add(name, content):
            archive.writestr(zipfile.ZipInfo(name, _ZIP_DATE), content,
                zipfile.ZIP_DEFLATED)
        add('summary.pdf', _summary_pdf(case, data, date))
        for letter in case.letters:
            if letter.pdf:
                add('letters/%s' % letter.pdf_name, letter.pdf)
        for attachment in invoices:
            if attachment.data:
                add('invoices/%s' % attachment.name, attachment.data)
        add('invoices.json', json.dumps(data['invoices'], indent=1,
                default=_default))
        add('computation.json', json.dumps({'costs': data['costs'],
                    'interest': data['interest']}, indent=1,
                default=_default))
        add('payments.json', json.dumps(data['payments'], indent=1,
                default=_default))
        add('dossier.json', json.dumps(data, indent=1, default=_default))
    return buffer.getvalue()
