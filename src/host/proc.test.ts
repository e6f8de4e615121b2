import { describe, expect, it } from 'vitest';
import { parseProcStat } from './proc.js';

describe('/proc/<pid>/stat parsing', () => {
  it('reads state, group, session and start time even when the command name holds spaces and parentheses', () => {
    const line = '4242 (we(ird) na me) S 1 4242 4200 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';
    expect(parseProcStat(line)).toEqual({ pid: 4242, comm: 'we(ird) na me', state: 'S', ppid: 1, pgrp: 4242, session: 4200, startTicks: 987654 });
    expect(parseProcStat('garbage')).toBeNull();
  });
});
