#!/usr/bin/env python3
"""Checks the relative links of every Markdown file in the repository: the file exists and, for
#anchors, a heading of that file has that GitHub anchor (lowercase, punctuation but '-' and '_'
dropped, spaces to '-'). Exits 1 and lists the broken ones."""
import os, re, subprocess, sys

root = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True, text=True, check=True).stdout.strip()
files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '*.md'],
                       cwd=root, capture_output=True, text=True, check=True).stdout.split()

def anchor(heading):
    h = re.sub(r'`|\*\*|\[([^\]]*)\]\([^)]*\)', lambda m: m.group(1) or '', heading.strip()).lower()
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(' ', '-')

def anchors(path):
    seen, out, fence = {}, set(), False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
        m = None if fence else re.match(r'#{1,6} (.*)', line)
        if m:
            a = anchor(m.group(1))
            n = seen.get(a, 0)
            seen[a] = n + 1
            out.add(a if n == 0 else f'{a}-{n}')
    return out

bad = 0
for f in files:
    path = os.path.join(root, f)
    text, fence = [], False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
        elif not fence:
            text.append(line)
    for target in re.findall(r'\]\(([^)\s]+)\)', ''.join(text)):
        if re.match(r'[a-z]+:', target):
            continue
        file, _, frag = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            print(f'{f}: {target}: no such file'); bad += 1
        elif frag and (not dest.endswith('.md') or frag not in anchors(dest)):
            print(f'{f}: {target}: no such anchor'); bad += 1
print(f'{len(files)} Markdown files, {bad} broken links')
sys.exit(1 if bad else 0)
