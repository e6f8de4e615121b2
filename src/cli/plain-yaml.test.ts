import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { plainYaml } from './plain-yaml.js';

describe('plainYaml', () => {
  it('round-trips through a real YAML parser, including strings that look like other things', () => {
    const data = {
      metadata: { name: 'web-1', labels: { app: 'web', 'example.com/tier': 'front' } },
      spec: {
        image: 'tiny',
        vcpus: 2,
        kernelArgs: 'console=ttyS0 quiet',
        weird: ['true', 'null', '123', '1e3', '', ' lead', 'trail ', 'a: b', '# not a comment', "it's", 'line\nbreak', '-dash', '@at', '*star'],
        ports: [{ host: 8080, guest: 80, protocol: 'tcp' }, { host: 1, guest: 2 }],
        empty: [],
        none: {},
        flag: false,
        nested: [[1, 2], ['x']],
      },
    };
    expect(parse(plainYaml(data))).toEqual(data);
  });

  it('reads like YAML people write', () => {
    expect(plainYaml({ spec: { image: 'tiny', ports: [{ host: 8080, guest: 80 }] } })).toBe('spec:\n  image: tiny\n  ports:\n    - host: 8080\n      guest: 80\n');
  });
});
