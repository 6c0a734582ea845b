import { describe, expect, it } from 'vitest';
import { MAX_LABEL_SETS, Metrics, labelValue } from '../../src/observability/metrics.ts';

describe('metric labels are bounded and safe', () => {
  it('replaces control characters and cuts long values', () => {
    expect(labelValue('ok-app')).toBe('ok-app');
    expect(labelValue('a\r\u0000b\u007f')).toBe('a__b_');
    expect(labelValue('x'.repeat(1000))).toHaveLength(128);
  });

  it('keeps at most MAX_LABEL_SETS label sets per metric, then counts under _other', async () => {
    const m = new Metrics('n1');
    for (let i = 0; i < MAX_LABEL_SETS + 500; i++) m.received('front', `t${i}\r`, '200', 1);
    const text = await m.text();
    const series = text.split('\n').filter((l) => l.startsWith('weft_service_invocation_res_recv_total{'));
    expect(series).toHaveLength(MAX_LABEL_SETS + 1);
    expect(series.find((l) => l.includes('dst_app_id="_other"'))).toMatch(/ 500$/);
    expect(text).not.toMatch(/[\r\u0000]/);
  });

  it('bounds the label sets workers report too', async () => {
    const m = new Metrics('n1');
    const counters: Record<string, number> = {};
    for (let i = 0; i < MAX_LABEL_SETS + 10; i++) counters[`weft_invoke_retries_total|app_id=a${i},reason=x`] = 1;
    m.absorb({ type: 'metrics', threadId: 1, counters });
    const series = (await m.text()).split('\n').filter((l) => l.startsWith('weft_invoke_retries_total{'));
    expect(series).toHaveLength(MAX_LABEL_SETS + 1);
  });
});
