#!/usr/bin/env python3
"""Derive addons/payt_dunning/data/api-openapi-v1.json, the OpenAPI document
our API serves, from Payt's published one: only the operations we implement
and the components they refer to.

    scripts/api-openapi.py /work/shared/specs/payt-api/payt-openapi-v1.json
"""
import json
import os
import sys

IMPLEMENTED = {
    '/v1/administrations': ['get'],
    '/v1/administrations/{administration_id}': ['get'],
    '/v1/debtors': ['get', 'post'],
    '/v1/debtors/{id}': ['get'],
    '/v1/invoices': ['get', 'post', 'patch'],
    '/v1/invoices/deleted': ['get'],
    '/v1/invoices/{id}': ['get'],
    '/v1/invoices/block': ['patch'],
    '/v1/invoices/resume': ['patch'],
    '/v1/payments': ['get'],
    '/v1/payment_plans': ['get', 'post'],
    '/v1/payment_plans/{id}': ['get'],
    '/v1/payment_plans/{id}/approve': ['patch'],
    '/v1/payment_plans/{id}/reject': ['patch'],
    '/v1/payment_plans/{id}/deactivate': ['patch'],
    '/v1/messages': ['get', 'post', 'patch'],
    '/v1/messages/{id}': ['get'],
    '/v1/credit_cases': ['get'],
    '/v1/credit_cases/{id}': ['get'],
    '/v1/psp_transactions': ['get'],
    '/v1/psp_transactions/{id}': ['get'],
    }
TARGET = os.path.join(os.path.dirname(__file__), '..', 'addons',
    'payt_dunning', 'data', 'api-openapi-v1.json')


def references(node):
    if isinstance(node, dict):
        if isinstance(node.get('$ref'), str):
            yield node['$ref']
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def derive(spec):
    paths = {path: {method: spec['paths'][path][method]
            for method in methods}
        for path, methods in IMPLEMENTED.items()}
    components = {}
    todo = list(references(paths))
    while todo:
        _, _, kind, name = todo.pop().split('/')
        if name in components.setdefault(kind, {}):
            continue
        components[kind][name] = spec['components'][kind][name]
        todo.extend(references(components[kind][name]))
    components['securitySchemes'] = spec['components']['securitySchemes']
    return dict(spec, paths=paths, components=components, servers=[],
        info=dict(spec['info'], title="payt API v1 (Payt-compatible)"),
        tags=[t for t in spec.get('tags', []) if t['name'] in {
                    tag for operations in paths.values()
                    for operation in operations.values()
                    for tag in operation.get('tags', [])}])


if __name__ == '__main__':
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with open(TARGET, 'w') as f:
        json.dump(derive(spec), f, indent=1, sort_keys=True)
        f.write('\n')
