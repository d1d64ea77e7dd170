// pedf dashboard: plain JavaScript, no build step. Live values come from the server-sent
// event stream /api/v1/stream (one event per control cycle); everything else from /api/v1.
'use strict';

const I18N = {
  zh: {
    'nav.live': '实时', 'nav.plan': '计划', 'nav.carbon': '碳核算', 'nav.devices': '设备与事件',
    'auth.title': '登录', 'auth.hint': '请输入访问令牌（首次启动时打印的管理员令牌，或管理员创建的令牌）。',
    'auth.token': '令牌 pedf_…', 'auth.login': '登录', 'auth.logout': '退出',
    'live.updated': '更新于', 'live.mode': '模式', 'live.strategy': '策略', 'live.flow': '能量流',
    'live.today': '今日', 'live.planvsactual': '今日计划与实际（电网功率）', 'live.control': '控制',
    'live.alarms': '告警',
    'flow.bus': '直流母线', 'flow.pv': '光伏', 'flow.grid': '电网', 'flow.converter': '变流器',
    'flow.battery': '储能', 'flow.load': '直流负荷', 'flow.ev': '充电桩',
    'flow.sign': '电网：+购电/−售电；储能：+放电/−充电（kW）',
    'kpi.tariff': '当前电价', 'kpi.factor': '电网排放因子', 'kpi.avoided': '今日减排 CO₂',
    'kpi.location': '今日购电排放 CO₂', 'kpi.selfsuff': '自给率', 'kpi.selfcons': '自消纳率',
    'kpi.cfe': '无碳能源得分', 'kpi.pvkwh': '今日光伏发电', 'kpi.import': '今日购电', 'kpi.export': '今日售电',
    'live.month': '本月（能碳双控）', 'kpi.mpeak': '本月最大需量 / 不增费上限',
    'kpi.mscope2': '本月购电排放（无EMS时）', 'kpi.intensity': '本月排放强度（目标）',
    'kpi.budget.month': '月度碳预算', 'kpi.budget.year': '年度碳预算',
    'budget.used': '已用', 'budget.left': '剩余', 'budget.ontrack': '进度正常', 'budget.ahead': '超出直线进度',
    'budget.none': '未设置',
    'pva.plan': '计划', 'pva.actual': '实际',
    'mode.automatic': '自动', 'mode.manual': '手动', 'mode.safe': '安全',
    'mode.battery': '储能功率 kW（+放/−充）', 'mode.apply': '切换模式',
    'mode.note': '需要运行人员权限；每次操作都记入审计日志。',
    'plan.day': '日期', 'plan.run': '计算日前计划', 'plan.list': '查看已有计划', 'plan.grid': '电网',
    'plan.pv': '光伏', 'plan.battery': '储能', 'plan.soc': 'SoC', 'plan.activate': '设为执行计划',
    'plan.table': '逐时段数据', 'plan.active': '执行中', 'plan.view': '查看',
    'carbon.from': '开始', 'carbon.to': '结束（不含）', 'carbon.account': '核算', 'carbon.issue': '签发减排证书',
    'dev.title': '设备', 'dev.events': '事件与告警', 'dev.quality': '通信', 'dev.id': '设备', 'dev.cap': '类型',
    'dev.last': '最近应答',
    'q.good': '正常', 'q.stale': '数据过期', 'q.bad': '故障', 'q.none': '未应答',
    'msg.forbidden': '权限不足：', 'msg.saved': '已生效', 'msg.error': '错误：', 'msg.offline': '连接中断，正在重连…',
    'msg.planning': '正在计算计划…', 'msg.none': '无', 'msg.unknown': '未知',
    'period.valley': '低谷', 'period.deep_valley': '深谷', 'period.flat': '平段', 'period.peak': '高峰', 'period.critical_peak': '尖峰',
    'pva.empty': '今日尚无执行计划或实测时段',
    'c.pv_kwh': '光伏发电 kWh', 'c.grid_import_kwh': '购电 kWh', 'c.grid_export_kwh': '售电 kWh',
    'c.consumption_kwh': '用电 kWh', 'c.location_kg': '购电排放（基于位置）kg', 'c.market_kg': '购电排放（基于市场）kg',
    'c.avoided_pv_kg': '光伏减排 kg', 'c.shifting_kg': '储能移峰效应 kg', 'c.park_intensity_kg_per_kwh': '园区用电碳强度 kg/kWh',
    'c.self_sufficiency': '自给率', 'c.self_consumption': '自消纳率', 'c.cfe_score': '无碳能源得分',
    'c.intervals': '数据', 'c.intervals.v': '实测时段 {m} 个，估算时段 {e} 个（估算时段不计光伏减排）',
    'chart.kw': 'kW', 'chart.soc': 'SoC %', 'chart.price': '底色：电价（越深越贵）', 'chart.now': '现在',
    'tok.title': '访问令牌（管理员）', 'tok.label': '用途，例如 值班电脑', 'tok.viewer': '查看', 'tok.operator': '运行人员',
    'tok.admin': '管理员', 'tok.days': '有效天数（可空）', 'tok.create': '创建令牌', 'tok.revoke': '吊销',
    'tok.new': '新令牌（只显示这一次，请妥善保存）：', 'tok.revoked': '已吊销', 'tok.never': '长期',
    'tok.id': '编号', 'tok.role': '角色', 'tok.created': '创建', 'tok.expires': '到期',
    'alarm.unacked': '待确认的告警', 'alarm.ack': '确认', 'alarm.none': '没有待确认的告警',
    'live.requests': '电网需求响应', 'gr.id': '编号', 'gr.source': '来源', 'gr.ask': '要求', 'gr.window': '时段',
    'gr.status': '状态', 'gr.delivered': '响应电量（实际 / 要求）', 'gr.settlement': '结算',
    'gr.kind.cap_import': '购电不超过', 'gr.kind.reduce_import': '购电较基线降低', 'gr.kind.cap_export': '售电不超过',
    'gr.kind.export_at_least': '售电不低于', 'gr.status.waiting': '待执行', 'gr.status.in force': '执行中', 'gr.status.over': '已结束',
    'gr.iv.at': '区间', 'gr.iv.reference': '基线或计划 kW', 'gr.iv.measured': '实测 kW', 'gr.iv.asked': '要求削减 kW', 'gr.iv.got': '实际响应 kW',
    'gr.iv.hint': '点击一行查看各区间', 'gr.iv.none': '尚无区间计量',
    'gr.vsbaseline': '对比基线', 'gr.vsplan': '对比计划 #{n}（无基线，不结算）', 'gr.notmeasured': '未能计量', 'gr.held': '接受',
    'gr.none': '近 7 天没有需求响应', 'gr.give': '下达需求响应', 'gr.kw': 'kW', 'gr.from': '开始', 'gr.to': '结束',
    'gr.price': '价格 元/kWh（可空）', 'gr.submit': '下达',
    'gr.note': '需要运行人员权限；EMS 先按重新计划校核，再接受、部分接受或拒绝（说明原因）。',
    'cap.meter': '电表', 'cap.pv-inverter': '光伏逆变器', 'cap.battery': '储能', 'cap.ev-charger': '充电桩',
    'cap.dc-load': '直流负荷', 'cap.converter': '变流器',
    'st.self': '自发自用（无执行计划）', 'st.safe': '安全状态（所有设备处于安全值）', 'st.safe.why': '安全状态：',
    'st.manual': '手动储能功率', 'st.plan': '计划', 'st.optimized': '优化', 'st.intraday': '日内滚动', 'st.ahead': '日前', 'st.rule': '规则',
    'st.fallback': '兜底',
    'kpi.cost': '今日电费（电度−售电+损耗）', 'kpi.costplan': '今日预计（按执行计划）',
    'pi.start': '时段', 'pi.import_price_cny_per_kwh': '购电价 元/kWh', 'pi.export_price_cny_per_kwh': '售电价 元/kWh',
    'pi.carbon_intensity_kg_per_kwh': '电网碳强度 kg/kWh', 'pi.grid_import_kw': '购电 kW', 'pi.grid_export_kw': '售电 kW',
    'pi.pv_available_kw': '光伏可发 kW', 'pi.pv_used_kw': '光伏利用 kW', 'pi.battery_charge_kw': '储能充电 kW',
    'pi.battery_discharge_kw': '储能放电 kW', 'pi.battery_soc_kwh': '储能电量 kWh', 'pi.fixed_load_kw': '固定负荷 kW',
    'pi.flexible_load_kw': '柔性负荷 kW', 'pi.load_shed_kw': '削减负荷 kW', 'pi.load_unserved_kw': '未供负荷 kW', 'pi.ev_kw': '充电桩 kW',
    'sev.info': '信息', 'sev.warning': '警告', 'sev.alarm': '告警',
    'nav.history': '历史与电费', 'history.show': '查询', 'history.csv': '导出 CSV',
    'h.r.day': '今日', 'h.r.week': '本周', 'h.r.month': '本月', 'h.r.year': '本年', 'h.sum': '合计',
    'h.month': '月份', 'h.days': '天数', 'h.energy': '电度电费 元', 'h.export': '售电收入 元', 'h.demand': '需量电费 元',
    'h.peak': '最大需量 kW', 'h.wear': '储能损耗 元', 'h.total': '合计 元', 'h.day': '日期', 'h.cover': '时段',
    'h.pv': '光伏 kWh', 'h.import': '购电 kWh', 'h.exportkwh': '售电 kWh', 'h.use': '用电 kWh', 'h.scope2': '购电排放 kg',
    'h.avoided': '减排 kg', 'h.selfsuff': '自给率',
    'live.chargers': '充电桩', 'ch.charging': '充电中', 'ch.waiting': '车辆在桩，未充电', 'ch.idle': '空闲', 'ch.lost': '未应答',
    'ch.limit': '限值', 'ch.session': '本次', 'ch.leaves': '预计离开', 'ch.green': '今日绿电占比',
    'cmd.stop': '结束充电', 'cmd.start': '开始充电', 'cmd.disable': '停用', 'cmd.enable': '启用', 'cmd.tag': '标识（开始充电用）',
    'ch.kwh': '需要的电量 kWh', 'ch.set': '设置本次充电', 'ch.pick': '点击充电桩设置车辆需要的电量和离开时间（运行人员）',
    'stale.old': '数据已过时：最近一次更新在 {n} 秒前', 'msg.network': '无法连接服务器',
    'pt.objective_cny': '目标函数 元', 'pt.energy_cost_cny': '购电电费 元', 'pt.export_revenue_cny': '售电收入 元',
    'pt.demand_charge_cny': '需量电费 元', 'pt.month_peak_before_kw': '本月此前最大需量 kW',
    'pt.demand_free_up_to_kw': '不增需量电费上限 kW', 'pt.carbon_cost_cny': '碳成本 元',
    'pt.degradation_cost_cny': '储能损耗成本 元', 'pt.load_shed_cost_cny': '切负荷成本 元', 'pt.penalty_cny': '罚项 元',
    'pt.carbon_kg': '碳排放 kg', 'pt.scope2_kg': '购电排放（范围二）kg', 'pt.scope2_allowance_kg': '范围二额度 kg',
    'pt.scope2_without_ems_kg': '无EMS时范围二排放 kg', 'pt.peak_import_kw': '计划最大购电功率 kW',
  },
  en: {
    'nav.live': 'Live', 'nav.plan': 'Plan', 'nav.carbon': 'Carbon', 'nav.devices': 'Devices & events',
    'auth.title': 'Log in', 'auth.hint': 'Enter an access token (the admin token printed on first start, or one an admin created).',
    'auth.token': 'token pedf_…', 'auth.login': 'Log in', 'auth.logout': 'Log out',
    'live.updated': 'Updated', 'live.mode': 'Mode', 'live.strategy': 'Strategy', 'live.flow': 'Energy flow',
    'live.today': 'Today', 'live.planvsactual': "Today's plan against actual (grid power)", 'live.control': 'Control',
    'live.alarms': 'Alarms',
    'flow.bus': 'DC bus', 'flow.pv': 'PV', 'flow.grid': 'Grid', 'flow.converter': 'Converter',
    'flow.battery': 'Battery', 'flow.load': 'DC loads', 'flow.ev': 'EV chargers',
    'flow.sign': 'Grid: +import/−export; battery: +discharge/−charge (kW)',
    'kpi.tariff': 'Price now', 'kpi.factor': 'Grid emission factor', 'kpi.avoided': 'CO₂ avoided today',
    'kpi.location': 'CO₂ of grid import today', 'kpi.selfsuff': 'Self-sufficiency', 'kpi.selfcons': 'Self-consumption',
    'kpi.cfe': 'Carbon-free score', 'kpi.pvkwh': 'PV today', 'kpi.import': 'Import today', 'kpi.export': 'Export today',
    'live.month': 'This month (energy and carbon)', 'kpi.mpeak': 'Month peak / free up to',
    'kpi.mscope2': 'Scope 2 this month (without EMS)', 'kpi.intensity': 'Intensity this month (target)',
    'kpi.budget.month': 'Monthly Scope 2 budget', 'kpi.budget.year': 'Annual Scope 2 budget',
    'budget.used': 'used', 'budget.left': 'left', 'budget.ontrack': 'on track', 'budget.ahead': 'above straight-line pace',
    'budget.none': 'not set',
    'pva.plan': 'plan', 'pva.actual': 'actual',
    'mode.automatic': 'Automatic', 'mode.manual': 'Manual', 'mode.safe': 'Safe',
    'mode.battery': 'battery kW (+discharge/−charge)', 'mode.apply': 'Change mode',
    'mode.note': 'Needs the operator role; every action is written to the audit log.',
    'plan.day': 'Day', 'plan.run': 'Run day-ahead plan', 'plan.list': 'List plans', 'plan.grid': 'grid',
    'plan.pv': 'PV', 'plan.battery': 'battery', 'plan.soc': 'SoC', 'plan.activate': 'Make active',
    'plan.table': 'Intervals', 'plan.active': 'active', 'plan.view': 'view',
    'carbon.from': 'From', 'carbon.to': 'To (exclusive)', 'carbon.account': 'Account', 'carbon.issue': 'Issue certificate',
    'dev.title': 'Devices', 'dev.events': 'Events and alarms', 'dev.quality': 'Comms', 'dev.id': 'Device', 'dev.cap': 'Kind',
    'dev.last': 'Last answer',
    'q.good': 'good', 'q.stale': 'stale', 'q.bad': 'fault', 'q.none': 'no answer',
    'msg.forbidden': 'Not allowed: ', 'msg.saved': 'Done', 'msg.error': 'Error: ', 'msg.offline': 'Connection lost, reconnecting…',
    'msg.planning': 'Planning…', 'msg.none': 'none', 'msg.unknown': 'unknown',
    'period.valley': 'valley', 'period.deep_valley': 'deep valley', 'period.flat': 'flat', 'period.peak': 'peak', 'period.critical_peak': 'critical peak',
    'pva.empty': 'No active plan or measured interval today yet',
    'c.pv_kwh': 'PV kWh', 'c.grid_import_kwh': 'Grid import kWh', 'c.grid_export_kwh': 'Grid export kWh',
    'c.consumption_kwh': 'Consumption kWh', 'c.location_kg': 'Scope 2 location-based kg', 'c.market_kg': 'Scope 2 market-based kg',
    'c.avoided_pv_kg': 'Avoided by PV kg', 'c.shifting_kg': 'Battery shifting effect kg', 'c.park_intensity_kg_per_kwh': 'Park intensity kg/kWh',
    'c.self_sufficiency': 'Self-sufficiency', 'c.self_consumption': 'Self-consumption', 'c.cfe_score': 'Carbon-free score',
    'c.intervals': 'Data', 'c.intervals.v': '{m} intervals measured, {e} estimated (estimated ones claim no PV)',
    'chart.kw': 'kW', 'chart.soc': 'SoC %', 'chart.price': 'shading: import price (darker is dearer)', 'chart.now': 'now',
    'tok.title': 'Access tokens (admin)', 'tok.label': 'what for, e.g. control room PC', 'tok.viewer': 'viewer', 'tok.operator': 'operator',
    'tok.admin': 'admin', 'tok.days': 'valid days (optional)', 'tok.create': 'Create token', 'tok.revoke': 'Revoke',
    'tok.new': 'New token (shown this once, keep it safe): ', 'tok.revoked': 'revoked', 'tok.never': 'never',
    'tok.id': 'No.', 'tok.role': 'Role', 'tok.created': 'Created', 'tok.expires': 'Expires',
    'alarm.unacked': 'Alarms to acknowledge', 'alarm.ack': 'Acknowledge', 'alarm.none': 'No alarm to acknowledge',
    'live.requests': 'Grid requests', 'gr.id': 'Id', 'gr.source': 'From', 'gr.ask': 'Asked', 'gr.window': 'Window',
    'gr.status': 'Status', 'gr.delivered': 'Delivered / asked', 'gr.settlement': 'Settlement',
    'gr.kind.cap_import': 'import at most', 'gr.kind.reduce_import': 'import lower by', 'gr.kind.cap_export': 'export at most',
    'gr.kind.export_at_least': 'export at least', 'gr.status.waiting': 'waiting', 'gr.status.in force': 'in force', 'gr.status.over': 'over',
    'gr.iv.at': 'Interval', 'gr.iv.reference': 'Reference kW', 'gr.iv.measured': 'Measured kW', 'gr.iv.asked': 'Asked kW', 'gr.iv.got': 'Delivered kW',
    'gr.iv.hint': 'click a row for its intervals', 'gr.iv.none': 'no interval measured yet',
    'gr.vsbaseline': 'against the baseline', 'gr.vsplan': 'against plan #{n} (no baseline, no settlement)', 'gr.notmeasured': 'not measured', 'gr.held': 'held',
    'gr.none': 'No grid request in the last 7 days', 'gr.give': 'Give a request', 'gr.kw': 'kW', 'gr.from': 'from', 'gr.to': 'to',
    'gr.price': 'price CNY/kWh (optional)', 'gr.submit': 'Give',
    'gr.note': 'Operator role; the EMS checks it with a re-plan, then holds it, holds part of it or refuses it (saying why).',
    'cap.meter': 'meter', 'cap.pv-inverter': 'PV inverter', 'cap.battery': 'battery', 'cap.ev-charger': 'EV charger',
    'cap.dc-load': 'DC load', 'cap.converter': 'converter',
    'st.self': 'self-consumption (no active plan)', 'st.safe': 'safe state (every device at its safe value)', 'st.safe.why': 'safe state: ',
    'st.manual': 'manual battery setpoint', 'st.plan': 'plan', 'st.optimized': 'optimized', 'st.intraday': 'intraday', 'st.ahead': 'day ahead', 'st.rule': 'rule',
    'st.fallback': 'fallback',
    'kpi.cost': 'Cost today (energy − export + wear)', 'kpi.costplan': 'Expected today (active plan)',
    'pi.start': 'Interval', 'pi.import_price_cny_per_kwh': 'Import CNY/kWh', 'pi.export_price_cny_per_kwh': 'Export CNY/kWh',
    'pi.carbon_intensity_kg_per_kwh': 'Grid kg/kWh', 'pi.grid_import_kw': 'Import kW', 'pi.grid_export_kw': 'Export kW',
    'pi.pv_available_kw': 'PV available kW', 'pi.pv_used_kw': 'PV used kW', 'pi.battery_charge_kw': 'Charge kW',
    'pi.battery_discharge_kw': 'Discharge kW', 'pi.battery_soc_kwh': 'Stored kWh', 'pi.fixed_load_kw': 'Fixed load kW',
    'pi.flexible_load_kw': 'Flexible load kW', 'pi.load_shed_kw': 'Shed kW', 'pi.load_unserved_kw': 'Unserved kW', 'pi.ev_kw': 'EV kW',
    'sev.info': 'info', 'sev.warning': 'warning', 'sev.alarm': 'alarm',
    'nav.history': 'History & bill', 'history.show': 'Show', 'history.csv': 'Export CSV',
    'h.r.day': 'Today', 'h.r.week': 'This week', 'h.r.month': 'This month', 'h.r.year': 'This year', 'h.sum': 'Total',
    'h.month': 'Month', 'h.days': 'Days', 'h.energy': 'Energy CNY', 'h.export': 'Export CNY', 'h.demand': 'Demand charge CNY',
    'h.peak': 'Peak demand kW', 'h.wear': 'Battery wear CNY', 'h.total': 'Total CNY', 'h.day': 'Day', 'h.cover': 'Intervals',
    'h.pv': 'PV kWh', 'h.import': 'Import kWh', 'h.exportkwh': 'Export kWh', 'h.use': 'Consumption kWh', 'h.scope2': 'Scope 2 kg',
    'h.avoided': 'Avoided kg', 'h.selfsuff': 'Self-sufficiency',
    'live.chargers': 'EV chargers', 'ch.charging': 'charging', 'ch.waiting': 'car plugged in, not charging', 'ch.idle': 'free', 'ch.lost': 'not answering',
    'ch.limit': 'limit', 'ch.session': 'session', 'ch.leaves': 'leaves', 'ch.green': 'green share today',
    'cmd.stop': 'Stop charging', 'cmd.start': 'Start charging', 'cmd.disable': 'Out of service', 'cmd.enable': 'Back in service', 'cmd.tag': 'id tag (to start)',
    'ch.kwh': 'energy the car needs kWh', 'ch.set': 'Set the session', 'ch.pick': 'Click a charger to set what its car needs and when it leaves (operator)',
    'stale.old': 'Data out of date: last update {n} s ago', 'msg.network': 'The server cannot be reached',
    'pt.objective_cny': 'Objective CNY', 'pt.energy_cost_cny': 'Energy cost CNY', 'pt.export_revenue_cny': 'Export revenue CNY',
    'pt.demand_charge_cny': 'Demand charge CNY', 'pt.month_peak_before_kw': 'Month peak before the plan kW',
    'pt.demand_free_up_to_kw': 'No demand charge up to kW', 'pt.carbon_cost_cny': 'Carbon cost CNY',
    'pt.degradation_cost_cny': 'Battery wear CNY', 'pt.load_shed_cost_cny': 'Load shedding CNY', 'pt.penalty_cny': 'Penalties CNY',
    'pt.carbon_kg': 'Carbon kg', 'pt.scope2_kg': 'Scope 2 kg', 'pt.scope2_allowance_kg': 'Scope 2 allowance kg',
    'pt.scope2_without_ems_kg': 'Scope 2 without the EMS kg', 'pt.peak_import_kw': 'Planned peak import kW',
  },
};

let lang = localStorage.getItem('pedf.lang') || 'zh';
let live = null;
let stream = null;
let currentPlan = null;
const $ = (id) => document.getElementById(id);
const t = (k) => (I18N[lang][k] ?? k);

function applyLang() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  $('lang').textContent = lang === 'zh' ? 'EN' : '中文';
  document.querySelectorAll('[data-i18n]').forEach((e) => { e.textContent = t(e.dataset.i18n); });
  document.querySelectorAll('[data-i18n-placeholder]').forEach((e) => { e.placeholder = t(e.dataset.i18nPlaceholder); });
  if (live) render(live);
  if (!$('app').hidden) loadPlanVsActual();
}

function say(text, kind) {
  const m = $('msg');
  m.textContent = text || '';
  m.className = kind || '';
}

async function api(method, path, body) {
  // The server says its errors in the page's language.
  const opt = { method, headers: { 'Accept-Language': lang === 'zh' ? 'zh-CN' : 'en' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  const ct = r.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    const err = new Error((data && data.error) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

function fail(e) {
  if (e.status === 401) { showLogin(); return; }
  // fetch's own error (no answer at all) is the browser's text: said in the page's language.
  if (e.status === undefined) { say(t('msg.network'), 'offline'); return; }
  say((e.status === 403 ? t('msg.forbidden') : t('msg.error')) + e.message, 'error');
}

// Times are shown in the park's zone (the live state's time_zone), never the browser's.
const tz = () => (live && live.time_zone) || 'Asia/Shanghai';
function parts(ms, withSeconds) {
  const o = { timeZone: tz(), year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  if (withSeconds) o.second = '2-digit';
  const p = {};
  for (const x of new Intl.DateTimeFormat('en-GB', o).formatToParts(new Date(ms))) p[x.type] = x.value;
  return p;
}
// 2026-11-27 10:30 (one unambiguous form in both languages).
function fmtDateTime(v, withSeconds = true) {
  const p = parts(new Date(v).getTime(), withSeconds);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${withSeconds ? ':' + p.second : ''}`;
}
function fmtTime(v, withSeconds) {
  const p = parts(new Date(v).getTime(), withSeconds);
  return `${p.hour}:${p.minute}${withSeconds ? ':' + p.second : ''}`;
}
// The park's local day, `offsetDays` from the EMS's today (the live state's local_day).
function parkDay(offsetDays) {
  const base = live && live.local_day ? live.local_day : new Date().toISOString().slice(0, 10);
  const d = new Date(`${base}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + offsetDays);
  return d.toISOString().slice(0, 10);
}

// A flow no device measures now is unknown (null in the live state), never 0 kW.
const kw = (v) => (v === null || v === undefined ? t('msg.unknown') : `${v.toFixed(1)} kW`);
const pct = (v) => `${(100 * v).toFixed(1)} %`;

function setLink(id, value, towardsBus) {
  // Dashes run in the direction the energy flows; a link with no flow is grey.
  const l = $(id);
  l.classList.toggle('idle', Math.abs(value) < 0.05);
  l.classList.toggle('in', value >= 0.05 === towardsBus);
  l.classList.toggle('out', value >= 0.05 !== towardsBus);
}

function render(s) {
  live = s;
  const f = s.flows;
  $('park-name').textContent = lang === 'zh' && s.park_name_zh ? s.park_name_zh : s.park_name;
  $('v-at').textContent = s.at ? fmtDateTime(s.at) : '–';
  $('mode-now').textContent = s.mode ? t('mode.' + s.mode.mode) + (s.mode.battery_kw !== undefined ? ` (${s.mode.battery_kw} kW)` : '') : '–';
  $('v-strategy').textContent = strategyText(s.strategy);
  $('v-pv').textContent = kw(f.pv_kw);
  $('v-grid').textContent = kw(f.grid_kw) + (f.grid_measured || f.grid_kw === null ? '' : ' *');
  $('v-converter').textContent = kw(f.converter_dc_kw);
  $('v-battery').textContent = kw(f.battery_kw);
  $('v-soc').textContent = f.soc_pct === null ? 'SoC –' : `SoC ${f.soc_pct.toFixed(1)} %`;
  $('v-load').textContent = kw(f.load_kw);
  $('v-ev').textContent = kw(f.ev_kw);
  setLink('l-pv', f.pv_kw, true);
  setLink('l-grid', f.converter_dc_kw, true);
  setLink('l-battery', f.battery_kw, true);
  setLink('l-load', f.load_kw, false);
  setLink('l-ev', f.ev_kw, false);
  const tr = s.tariff;
  $('v-tariff').textContent = tr.period ? `${t('period.' + tr.period)} · ${tr.import_cny_per_kwh.toFixed(4)} CNY/kWh` : '–';
  $('v-factor').textContent = `${s.grid_factor_kg_per_kwh} kg CO₂/kWh`;
  const d = s.today;
  $('v-avoided').textContent = `${d.avoided_kg.toFixed(1)} kg`;
  $('v-location').textContent = `${d.location_kg.toFixed(1)} kg`;
  $('v-selfsuff').textContent = pct(d.self_sufficiency);
  $('v-selfcons').textContent = pct(d.self_consumption);
  $('v-cfe').textContent = pct(d.cfe_score);
  $('v-pvkwh').textContent = `${d.pv_kwh.toFixed(1)} kWh`;
  $('v-import').textContent = `${d.grid_import_kwh.toFixed(1)} kWh`;
  $('v-export').textContent = `${d.grid_export_kwh.toFixed(1)} kWh`;
  // The day's bill so far; with the active plan's intervals still to come, what it expects.
  const cost = d.energy_cny - d.export_cny + d.wear_cny;
  $('v-cost').textContent = `${cost.toFixed(2)} CNY`;
  $('v-cost').title = `${d.energy_cny.toFixed(2)} − ${d.export_cny.toFixed(2)} + ${d.wear_cny.toFixed(2)}`;
  $('v-cost-plan').textContent = planRest === null ? '–' : `${(cost + planRest(s.at)).toFixed(2)} CNY`;
  const m = s.month;
  if (m) {
    const tons = (kg) => `${(kg / 1000).toFixed(1)} t`;
    $('v-mpeak').textContent = `${m.peak_import_kw.toFixed(0)} kW / ${m.demand_free_up_to_kw.toFixed(0)} kW`;
    $('v-mscope2').textContent = `${tons(m.scope2_kg)} (${tons(m.scope2_without_ems_kg)})`;
    const inten = m.consumption_kwh > 0 ? `${(m.scope2_kg / m.consumption_kwh).toFixed(3)} kg/kWh` : '–';
    $('v-intensity').textContent = m.intensity_target_kg_per_kwh === null
      ? inten : `${inten} (${m.intensity_target_kg_per_kwh.toFixed(3)})`;
    for (const period of ['month', 'year']) {
      const b = m.budgets.find((x) => x.period === period);
      const el = $('v-budget-' + period);
      el.textContent = b
        ? `${t('budget.used')} ${tons(b.used_kg)} / ${tons(b.budget_kg)} · ${t('budget.left')} ${tons(b.left_kg)} · ${t(b.on_track ? 'budget.ontrack' : 'budget.ahead')}`
        : t('budget.none');
      el.className = b && !b.on_track ? 'alarm' : '';
    }
  }
  renderChargers(s);
  const al = $('alarms');
  al.replaceChildren(...[...s.alarms, ...s.faults].map((a) => li(a, 'alarm')));
  if (!al.children.length) al.append(li(t('msg.none')));
  const tb = $('devices');
  tb.replaceChildren(row([t('dev.id'), t('dev.cap'), t('dev.quality'), t('dev.last')], true),
    ...s.devices.map((x) => {
      const r = row([x.id, t('cap.' + x.capability).replace(/^cap\./, ''), t('q.' + x.quality), x.last_ok ? fmtTime(x.last_ok, true) : '–']);
      r.children[2].className = 'q-' + x.quality;
      if (x.error) r.title = x.error;
      return r;
    }));
}

// A card per charger: its state, power against the limit in force, the session's energy
// against what the car asked and when it leaves, the charger's last answer.
let sessionCharger = null;

// The park zone's offset from UTC at an instant, as +08:00.
function zoneOffset(ms) {
  const p = parts(ms, true);
  const local = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  const min = Math.round((local - Math.floor(ms / 1000) * 1000) / 60000);
  const a = Math.abs(min);
  return `${min < 0 ? '-' : '+'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

function renderChargers(s) {
  $('ch-hint').hidden = !['operator', 'admin'].includes($('who').dataset.role) || !s.chargers.length;
  const quality = Object.fromEntries(s.devices.map((d) => [d.id, d]));
  // Each card is kept and its content renewed (a card replaced every cycle would lose the
  // click that lands while it is replaced).
  const cards = Object.fromEntries([...$('chargers').children].map((e) => [e.dataset.id, e]));
  $('chargers').replaceChildren(...s.chargers.map((c) => {
    const q = quality[c.id];
    const state = c.kw === null || (q && q.quality !== 'good') ? 'lost'
      : c.kw > 0.05 ? 'charging' : c.session ? 'waiting' : 'idle';
    const e = cards[c.id] || document.createElement('div');
    e.replaceChildren();
    e.className = 'charger ' + state;
    e.dataset.id = c.id;
    const line = (text, cls) => { const d = document.createElement('div'); d.textContent = text; if (cls) d.className = cls; return d; };
    const head = document.createElement('div');
    const b = document.createElement('b'); b.textContent = c.id;
    head.append(b, ` · ${t('ch.' + state)}`);
    e.append(head);
    e.append(line(`${kw(c.kw)}${c.setpoint_kw === null || c.setpoint_kw === undefined ? '' : ` / ${t('ch.limit')} ${c.setpoint_kw.toFixed(1)} kW`}`, 'kw'));
    if (c.session) {
      const ss = c.session;
      e.append(line(`${t('ch.session')} ${ss.delivered_kwh.toFixed(1)} / ${ss.requested_kwh.toFixed(1)} kWh`));
      const bar = document.createElement('div'); bar.className = 'bar';
      const fill = document.createElement('i');
      fill.style.width = `${Math.min(100, (100 * ss.delivered_kwh) / Math.max(ss.requested_kwh, 1e-9)).toFixed(0)}%`;
      bar.append(fill); e.append(bar);
      if (ss.green_share !== null && ss.green_share !== undefined) {
        e.append(line(`${t('ch.green')} ${(100 * ss.green_share).toFixed(0)} %`, 'green'));
      }
      e.append(line(`${t('ch.leaves')} ${fmtDateTime(ss.departure, false)}`));
    }
    // An operator sets what the car on it needs and when it leaves.
    if (['operator', 'admin'].includes($('who').dataset.role)) {
      e.classList.add('pick');
      if (c.id === sessionCharger) e.classList.add('chosen');
      e.onclick = () => {
        sessionCharger = c.id;
        $('session-form').hidden = false;
        $('session-charger').textContent = c.id;
        const now = live && live.chargers.find((x) => x.id === c.id);
        if (now && now.session) $('session-kwh').value = now.session.requested_kwh.toFixed(1);
        // The commands its protocol takes (an OCPP charger's), if any.
        const acts = (now && now.actions) || [];
        $('charger-actions').hidden = !acts.length;
        document.querySelectorAll('#charger-actions [data-action]').forEach((x) => { x.hidden = !acts.includes(x.dataset.action); });
        $('charger-tag').hidden = !acts.includes('start');
      };
    } else e.onclick = null;
    e.title = q && q.last_ok ? `${t('dev.last')}: ${fmtDateTime(q.last_ok)}` : '';
    return e;
  }));
}

// What a charger did with an operator's command, in the page's language.
function cmdOutcome(o) {
  if (lang !== 'zh') return o;
  return o.replace(/^transaction (\d+) ended$/, '交易 $1 已结束')
    .replace(/^accepted: a transaction for (.+) starts when a car is connected$/, '已接受：车辆连接后为 $1 开始交易')
    .replace(/^scheduled: out of service when its transaction ends$/, '已安排：本次交易结束后停用')
    .replace(/^out of service$/, '已停用').replace(/^in service$/, '已启用');
}

// The strategy the EMS says it follows, in the page's language (its known forms; a reason
// the runtime gives stays as it is).
function strategyText(v) {
  if (v === 'self-consumption (no active plan)') return t('st.self');
  if (v === 'safe state (every device at its safe value)') return t('st.safe');
  if (v === 'manual battery setpoint') return t('st.manual');
  if (v.startsWith('safe state: ')) return t('st.safe.why') + v.slice('safe state: '.length);
  const m = v.match(/^plan #(\d+) \((.*)\)$/);
  if (m) {
    const words = strategyWords(m[2]);
    return `${t('st.plan')} #${m[1]}（${words}）`.replace('（', lang === 'zh' ? '（' : ' (').replace(/）$/, lang === 'zh' ? '）' : ')');
  }
  return v;
}

// The EMS's event messages in Chinese (their known forms; the figures and names kept, an
// unknown message as it is).
const EVENT_ZH = [
  [/^car on (\S+): asks ([\d.]+) kWh by (.+?) \(the park's default session\)$/, (m) => `车辆接入 ${m[1]}：需要 ${m[2]} kWh，预计 ${m[3]} 离开（园区默认会话）`],
  [/^car left (\S+): ([\d.]+) of ([\d.]+) kWh in ([\d.]+) h(.*)$/, (m) => `车辆离开 ${m[1]}：${m[4]} 小时充 ${m[2]} / ${m[3]} kWh${m[5].replace(/^, ([\d.]+) kWh short$/, '，少充 $1 kWh').replace(' (before its expected departure)', '（早于预计离开时间）')}`],
  [/^re-planned \((.+)\): plan #(\d+) \((.+?)\) active(?:, replacing plan #(\d+) \((.+)\))?$/, (m) => `已重新计划（${m[1].replace(/every (\d+) min/, '每 $1 分钟')}）：执行计划 #${m[2]}（${strategyWords(m[3])}）${m[4] ? `，替换计划 #${m[4]}` : ''}`],
  [/^re-plan failed \((.+?)\): (.+)$/, (m) => `重新计划失败（${m[1]}）：${m[2]}`],
  // The controller's alarms.
  [/^import ([\d.]+) kW above the (\d+) kW limit: loads exceed what PV, battery and the limit can supply$/, (m) => `购电 ${m[1]} kW 超过 ${m[2]} kW 限值：负荷超过光伏、储能和限值所能供给`],
  [/^import ([\d.]+) kW sets a new month peak above (\d+) kW: (.+)$/, (m) => `购电 ${m[1]} kW 将创本月新需量峰值（高于 ${m[2]} kW）：储能、柔性负荷和充电桩均已到限（充电桩保留会话按时离开所需）`],
  [/^export ([\d.]+) kW above the PV ([\d.]+) kW: battery discharge reaches the grid$/, (m) => `上网 ${m[1]} kW 超过光伏 ${m[2]} kW：储能放电流入电网`],
  [/^battery setpoint not a number: held at 0 kW$/, () => '储能设定值不是数值：保持 0 kW'],
  // The OCPP central system's events.
  [/^charger (\S+) connected \((.+)\)$/, (m) => `充电桩 ${m[1]} 已连接（${m[2]}）`],
  [/^charger (\S+) connected again \((.+)\); its older connection is closed$/, (m) => `充电桩 ${m[1]} 重新连接（${m[2]}）；旧连接已关闭`],
  [/^charger (\S+) disconnected$/, (m) => `充电桩 ${m[1]} 已断开`],
  [/^charger (\S+) booted: (.+)$/, (m) => `充电桩 ${m[1]} 已启动：${m[2].replace(', firmware ', '，固件 ')}`],
  [/^charger (\S+) connector (\d+): transaction (\d+) started by (.+) \((\w+)\)$/, (m) => `充电桩 ${m[1]} 枪 ${m[2]}：交易 ${m[3]} 开始，标识 ${m[4]}（${m[5] === 'Accepted' ? '已接受' : m[5]}）`],
  [/^charger (\S+) connector (\d+): transaction (\d+) stopped \((\w+)\), ([\d.]+) kWh$/, (m) => `充电桩 ${m[1]} 枪 ${m[2]}：交易 ${m[3]} 结束（${m[4]}），${m[5]} kWh`],
  [/^charger (\S+) connector (\d+): its clock went back \(values stamped (\S+) after (\S+)\): taken on its new clock$/, (m) => `充电桩 ${m[1]} 枪 ${m[2]}：时钟回拨（${m[4]} 之后的计量值时间为 ${m[3]}）：按新时钟采用`],
  [/^charger (\S+) connector (\d+) faulted: (.+)$/, (m) => `充电桩 ${m[1]} 枪 ${m[2]} 故障：${m[3]}`],
  [/^charger (\S+) did not answer (\w+) in ([\d.]+) s$/, (m) => `充电桩 ${m[1]} 未在 ${m[3]} 秒内应答 ${m[2]}`],
  [/^charger (\S+) silent for (\d+) s \(no message, no answer to pings\): its connection is taken for dead and closed$/, (m) => `充电桩 ${m[1]} 已静默 ${m[2]} 秒（无消息、无 ping 应答）：连接视为失效并关闭`],
  [/^charger (\S+) was refused: (.+)$/, (m) => `充电桩 ${m[1]} 被拒绝：${m[2].replace(/^wrong or missing password.*/, '密码错误或缺失').replace(/^it offers no subprotocol.*/, '未提供 pedf 支持的子协议（ocpp1.6）')}`],
  [/^an unknown charger `(.+)` was refused \(not in the run file's chargers\)(.*)$/, (m) => `未知充电桩 \`${m[1]}\` 被拒绝（不在运行文件的充电桩中）${m[2]}`],
  [/^charger (\S+) answered (\w+) with (\w+): (.+)$/, (m) => `充电桩 ${m[1]} 对 ${m[2]} 应答 ${m[3]}：${m[4].replace('its safe default is not in place', '其安全默认限值未生效').replace('it sends meter values at its own interval', '其按自身间隔上报计量值')}`],
  [/^(stop|start|disable|enable) on (\S+) by (.+?) \((.*)\): (.+)$/, (m) => `${t('cmd.' + m[1])} ${m[2]}，操作人 ${m[3]}（${m[4]}）：${m[5].startsWith('not done: ') ? '未执行：' + m[5].slice(10) : cmdOutcome(m[5])}`],
  [/^planned (\S+) ahead \((.+)\): plan #(\d+) \((.+?)\) active for it(?:, replacing plan #(\d+) \((.+)\))?$/, (m) => `已提前计划 ${m[1]}（${m[2].replace(/every (\d+) min/, '每 $1 分钟')}）：计划 #${m[3]}（${strategyWords(m[4])}）为其执行计划${m[5] ? `，替换计划 #${m[5]}` : ''}`],
  [/^planned (\S+) ahead \((.+)\): plan #(\d+) \((.+?)\) stored; plan #(\d+) \((.+)\) stays active for it$/, (m) => `已提前计划 ${m[1]}（${m[2].replace(/every (\d+) min/, '每 $1 分钟')}）：计划 #${m[3]}（${strategyWords(m[4])}）已保存；计划 #${m[5]}（${strategyWords(m[6])}）仍为其执行计划`],
  [/^planning (\S+) ahead failed \((.+?)\): (.+); it starts without a plan \(self-consumption\) until its first re-plan$/, (m) => `提前计划 ${m[1]} 失败（${m[2]}）：${m[3]}；该日开始时无计划（自发自用），直到首次重新计划`],
  [/^(\S+) \(([a-z-]+)\) not answering: (.+)$/, (m) => `${m[1]}（${t('cap.' + m[2])}）未应答：${m[3].replace('never read since the start', '启动以来未读到').replace(/^its last read failed/, '最近一次读取失败').replace(/^no reading within its (\d+) s stale time/, '$1 秒内无读数')}`],
  [/^(\S+) answering again$/, (m) => `${m[1]} 恢复应答`],
  [/^the grid meter answers again: the operator's mode applies$/, () => '电网电表恢复应答：按运行人员设定的模式运行'],
  [/^mode (\w+)(?: \(battery (\S+) kW\))? set by (.+?): (.*)$/, (m) => `模式切换为${t('mode.' + m[1])}${m[2] ? `（储能 ${m[2]} kW）` : ''}，操作人 ${m[3]}：${m[4]}`],
  [/^plan #(\d+) \((.+?)\) for (\S+) made active by (.+?)(?:, replacing plan #(\d+) \((.+)\))?$/, (m) => `计划 #${m[1]}（${strategyWords(m[2])}）设为 ${m[3]} 的执行计划，操作人 ${m[4]}${m[5] ? `，替换计划 #${m[5]}` : ''}`],
  [/^plan #(\d+) \((.+?)\) for (\S+) computed, asked by (.+)$/, (m) => `已计算 ${m[3]} 的计划 #${m[1]}（${strategyWords(m[2])}），操作人 ${m[4]}`],
  [/^pedf run started for (\S+) with (\d+) devices$/, (m) => `pedf 开始运行：${m[1]}，${m[2]} 台设备`],
  [/^pedf run stopped; devices in their safe state$/, () => 'pedf 已停止运行；设备处于安全状态'],
  [/^alarm #(\d+) acknowledged by (.+)$/, (m) => `告警 #${m[1]} 已确认，操作人 ${m[2]}`],
  [/^interval (\S+) closed with (\d+) % of it observed: stored as (.+)$/, (m) => `时段 ${m[1]} 结束，仅观测到 ${m[2]} %：记为 ${m[3] === 'measured-partial' ? '部分实测' : m[3]}`],
  [/^(\S+) capped at ([\d.]+) kW: ([\d.]+) kW of its demand shed \((plan|peak guard)\)$/, (m) => `${m[1]} 限至 ${m[2]} kW：削减 ${m[3]} kW（${m[4] === 'plan' ? '按计划' : '需量防护'}）`],
  [/^(\S+): cap lifted$/, (m) => `${m[1]}：取消限值`],
  [/^token #(\d+) \((\w+)\) for (.+) created by (.+)$/, (m) => `已创建令牌 #${m[1]}（${t('tok.' + m[2])}）：${m[3]}，操作人 ${m[4]}`],
  [/^token #(\d+) revoked by (.+)$/, (m) => `令牌 #${m[1]} 已吊销，操作人 ${m[2]}`],
];
function strategyWords(w) {
  return lang === 'zh' ? w.replace(/\boptimized\b/, t('st.optimized')).replace(/\bintraday\b/, t('st.intraday')).replace(/\bday ahead\b/, t('st.ahead'))
    .replace(/^rule\b/, t('st.rule')).replace(/\bfallback\b/, t('st.fallback')) : w;
}
function eventText(msg) {
  if (lang !== 'zh') return msg;
  if (msg.startsWith('cleared: ')) return '已解除：' + eventText(msg.slice('cleared: '.length));
  for (const [re, f] of EVENT_ZH) {
    const m = msg.match(re);
    if (m) return f(m);
  }
  return msg;
}

function li(text, cls) {
  const e = document.createElement('li');
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function row(cells, head) {
  const r = document.createElement('tr');
  for (const c of cells) {
    const e = document.createElement(head ? 'th' : 'td');
    if (c instanceof Node) e.append(c); else e.textContent = c;
    r.append(e);
  }
  return r;
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource('/api/v1/stream');
  stream.addEventListener('state', (ev) => {
    if ($('msg').className === 'offline') say('');
    lastSeen = Date.now();
    const first = !live || !live.local_day;
    const day = live && live.local_day;
    render(JSON.parse(ev.data));
    setStale(false);
    // The park's midnight passed (at --speed the EMS's clock runs ahead): today's chart anew.
    if (first || live.local_day !== day) loadPlanVsActual();
  });
  stream.onerror = () => {
    // The browser reconnects by itself; a 401 closes the stream, so check the session.
    setStale(true);
    say(t('msg.offline'), 'offline');
    api('GET', '/api/v1/whoami').catch(fail);
  };
}

// Stale: no state for 5 s (the server stopped, the network is gone). Values are greyed,
// their age is said and the flow's animation stops.
let lastSeen = 0;
function setStale(on) {
  document.body.classList.toggle('stale', on);
  const n = Math.round((Date.now() - lastSeen) / 1000);
  $('stale').hidden = !on || !lastSeen;
  $('stale').textContent = t('stale.old').replace('{n}', n);
}

function showLogin() {
  if (stream) { stream.close(); stream = null; }
  $('app').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('who').textContent = '';
}

async function start() {
  try {
    const me = await api('GET', '/api/v1/whoami');
    $('who').textContent = `${me.label} · ${me.role}`;
    $('who').dataset.role = me.role;
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    // The state once before the stream: the park's zone and today for what loads first.
    render(await api('GET', '/api/v1/state'));
    $('carbon-from').value = parkDay(-7);
    $('carbon-to').value = parkDay(0);
    connect();
    loadEvents();
    loadAlarms();
    loadPlanVsActual();
    loadRequests();
  } catch (e) {
    if (e.status === 401) showLogin(); else fail(e);
  }
}

async function loadEvents() {
  try {
    const ev = await api('GET', '/api/v1/events?limit=50');
    $('events').replaceChildren(...ev.map((e) => li(`${fmtDateTime(e.at)} [${t('sev.' + e.severity)}] ${eventText(e.message)}`, e.severity)));
  } catch (e) { fail(e); }
}

// A chart on a time axis in the park's zone: `series` of {points: [[ms, value]], stepMs, cls,
// right (SoC % on the right axis)}, drawn as steps over their interval (a single interval
// shows); `bands` of {from, to, level 0..1} shade the import price; `now` marks the EMS's time.
function timeChart(svg, { from, to, series, bands = [], now = null, right = false }) {
  const W = 800; const H = 240; const L = 52; const R = right ? 48 : 24; const T = 18; const B = 26;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const ns = 'http://www.w3.org/2000/svg';
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const left = series.filter((x) => !x.right).flatMap((x) => x.points.map((p) => p[1])).filter(Number.isFinite);
  let lo = Math.min(0, ...left); let hi = Math.max(1, ...left);
  const raw = (hi - lo) / 4; const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= raw);
  lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
  const x = (ms) => L + ((ms - from) / (to - from)) * (W - L - R);
  const y = (v) => H - B - ((v - lo) / (hi - lo)) * (H - T - B);
  const ys = (v) => H - B - (v / 100) * (H - T - B);
  const parts_ = [];
  for (const b of bands) {
    parts_.push(el('rect', { x: x(b.from).toFixed(1), y: T, width: (x(b.to) - x(b.from)).toFixed(1), height: H - T - B, class: 'band', 'fill-opacity': (0.04 + 0.22 * b.level).toFixed(3) }));
  }
  for (let v = lo; v <= hi + step / 2; v += step) {
    parts_.push(el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: v === 0 ? 'axis zero' : 'axis' }));
    parts_.push(el('text', { x: L - 4, y: y(v) + 4, class: 'tick ytick' }, `${+v.toFixed(6)}`));
  }
  parts_.push(el('text', { x: L - 4, y: T - 6, class: 'tick ytick' }, t('chart.kw')));
  if (right) {
    for (const v of [0, 50, 100]) parts_.push(el('text', { x: W - R + 4, y: ys(v) + 4, class: 'tick rtick' }, `${v}`));
    parts_.push(el('text', { x: W - R + 4, y: T - 6, class: 'tick rtick' }, t('chart.soc')));
  }
  // Hour ticks: every 3 h of the park's clock (every hour for spans of 6 h or less).
  const hour = 3600e3; const every = to - from <= 6 * hour ? hour : 3 * hour;
  const p0 = parts(from); const offset = (Number(p0.hour) * 60 + Number(p0.minute)) * 60e3;
  for (let tk = from - offset + Math.ceil(offset / every) * every; tk <= to; tk += every) {
    parts_.push(el('line', { x1: x(tk), x2: x(tk), y1: T, y2: H - B, class: 'axis vgrid' }));
    const tx = el('text', { x: x(tk), y: H - B + 16, class: 'tick xtick' }, fmtTime(tk));
    tx.dataset.ms = tk;
    parts_.push(tx);
  }
  for (const s_ of series) {
    const pts = s_.points.filter((p) => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    if (!pts.length) continue;
    const yy = s_.right ? ys : y;
    let d = ''; let end = null;
    for (const [ms, v] of pts) {
      d += (end === ms ? `V${yy(v).toFixed(1)}` : `M${x(ms).toFixed(1)},${yy(v).toFixed(1)}`) + `H${x(ms + s_.stepMs).toFixed(1)}`;
      end = ms + s_.stepMs;
    }
    const path = el('path', { d, class: 'series ' + s_.cls });
    path.dataset.firstMs = pts[0][0];
    parts_.push(path);
  }
  if (now !== null && now >= from && now <= to) {
    parts_.push(el('line', { x1: x(now), x2: x(now), y1: T, y2: H - B, class: 'now' }));
    parts_.push(el('text', { x: x(now) + 3, y: T + 10, class: 'tick' }, t('chart.now')));
  }
  svg.replaceChildren(...parts_);
  svg.dataset.from = from; svg.dataset.to = to;
}

// The plan's import price as shading, darkest at its dearest interval.
function priceBands(intervals, stepMs) {
  const prices = intervals.map((i) => i.import_price_cny_per_kwh);
  const lo = Math.min(...prices); const hi = Math.max(...prices);
  return intervals.map((i) => {
    const from = Date.parse(i.start);
    return { from, to: from + stepMs, level: hi > lo ? (i.import_price_cny_per_kwh - lo) / (hi - lo) : 0 };
  });
}

function emptyChart(svg, key) {
  const tx = document.createElementNS('http://www.w3.org/2000/svg', 'text');
  svg.setAttribute('viewBox', '0 0 800 240');
  tx.setAttribute('x', 400); tx.setAttribute('y', 120); tx.setAttribute('class', 'empty');
  tx.textContent = t(key);
  svg.replaceChildren(tx);
}

// The active plan's energy cost of today's intervals after a given instant (import at the
// interval's price less export at the export price), or null without a plan.
let planRest = null;

async function loadPlanVsActual() {
  try {
    const day = parkDay(0);
    const [plans, recs] = await Promise.all([
      api('GET', `/api/v1/plans?day=${day}`),
      api('GET', `/api/v1/records?day=${day}`),
    ]);
    const act = plans.find((p) => p.active);
    const stepMs = recs.interval_hours * 3600e3;
    let planned = []; let bands = [];
    if (act) {
      const p = await api('GET', `/api/v1/plans/${act.id}`);
      // Each interval at its own start: an intraday plan begins where it begins.
      planned = p.plan.intervals.map((i) => [Date.parse(i.start), i.grid_import_kw - i.grid_export_kw]);
      bands = priceBands(p.plan.intervals, stepMs);
      const end = Date.parse(recs.to);
      planRest = (at) => p.plan.intervals
        .filter((i) => Date.parse(i.start) > Date.parse(at) && Date.parse(i.start) < end)
        .reduce((sum, i) => sum + (i.grid_import_kw * i.import_price_cny_per_kwh - i.grid_export_kw * i.export_price_cny_per_kwh) * (stepMs / 3600e3), 0);
    } else {
      planRest = null;
    }
    const actual = recs.records.map((r) => [Date.parse(r.start), (r.grid_import_kwh - r.grid_export_kwh) / recs.interval_hours]);
    if (!planned.length && !actual.length) { emptyChart($('pva'), 'pva.empty'); return; }
    timeChart($('pva'), {
      from: Date.parse(recs.from), to: Date.parse(recs.to), bands,
      now: live && live.at ? Date.parse(live.at) : null,
      series: [{ points: planned, stepMs, cls: 'plan' }, { points: actual, stepMs, cls: 'act' }],
    });
  } catch (e) { fail(e); }
}

async function listPlans() {
  try {
    const day = $('plan-day').value;
    const plans = await api('GET', `/api/v1/plans?day=${day}`);
    $('plans').replaceChildren(...plans.map((p) => {
      const b = document.createElement('button');
      b.textContent = t('plan.view');
      b.onclick = () => viewPlan(p.id);
      return row([`#${p.id}`, p.strategy, fmtDateTime(p.created), p.active ? t('plan.active') : '', b]);
    }));
  } catch (e) { fail(e); }
}

async function viewPlan(id) {
  try {
    const p = await api('GET', `/api/v1/plans/${id}`);
    currentPlan = p;
    $('plan-view').hidden = false;
    $('plan-title').textContent = `#${p.id} · ${p.day} · ${p.strategy}${p.active ? ' · ' + t('plan.active') : ''}`;
    const iv = p.plan.intervals;
    const stepMs = p.plan.interval_minutes * 60e3;
    if (iv.length) {
      const at = (i) => Date.parse(i.start);
      const cap = live && live.battery_capacity_kwh > 0 ? live.battery_capacity_kwh : null;
      // The plan's day from midnight (an intraday plan starts where it starts).
      const from = Math.min(at(iv[0]), Date.parse(`${p.day}T00:00:00${iv[0].start.slice(19)}`));
      timeChart($('plan-chart'), {
        from, to: Math.max(at(iv[iv.length - 1]) + stepMs, from + 864e5), right: cap !== null,
        bands: priceBands(iv, stepMs),
        series: [
          { points: iv.map((i) => [at(i), i.grid_import_kw - i.grid_export_kw]), stepMs, cls: 'grid' },
          { points: iv.map((i) => [at(i), i.pv_used_kw]), stepMs, cls: 'pv' },
          { points: iv.map((i) => [at(i), i.battery_discharge_kw - i.battery_charge_kw]), stepMs, cls: 'bat' },
          { points: cap ? iv.map((i) => [at(i), (100 * i.battery_soc_kwh) / cap]) : [], stepMs, cls: 'soc', right: true },
        ],
      });
    } else emptyChart($('plan-chart'), 'msg.none');
    const terms = $('plan-terms');
    terms.replaceChildren();
    // The bill's terms first, then the peak and carbon figures; anything newer after them.
    const order = ['objective_cny', 'energy_cost_cny', 'export_revenue_cny', 'demand_charge_cny', 'degradation_cost_cny',
      'carbon_cost_cny', 'load_shed_cost_cny', 'penalty_cny', 'peak_import_kw', 'month_peak_before_kw',
      'demand_free_up_to_kw', 'scope2_kg', 'scope2_without_ems_kg', 'scope2_allowance_kg', 'carbon_kg'];
    const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
    const entries = Object.entries(p.plan).sort((a, b) => rank(a[0]) - rank(b[0]));
    for (const [k, v] of entries) {
      if (typeof v !== 'number' || k === 'interval_minutes') continue;
      const dt = document.createElement('dt'); dt.textContent = t('pt.' + k).replace(/^pt\./, '');
      const dd = document.createElement('dd'); dd.textContent = v.toFixed(2);
      terms.append(dt, dd);
    }
    const keys = iv.length ? Object.keys(iv[0]).filter((k) => typeof iv[0][k] !== 'object') : [];
    const cell = (k, v) => {
      if (k === 'start') return fmtTime(v);
      if (typeof v !== 'number') return String(v);
      return v.toFixed(k.endsWith('_per_kwh') ? 4 : 1);
    };
    $('plan-table').replaceChildren(row(keys.map((k) => t('pi.' + k).replace(/^pi\./, '')), true), ...iv.map((i) => row(keys.map((k) => cell(k, i[k])))));
  } catch (e) { fail(e); }
}

// Alarms raised and not yet acknowledged (from the events), newest first; an operator
// acknowledges each (audited, an event).
async function loadAlarms() {
  try {
    const ev = await api('GET', '/api/v1/events?limit=200');
    const open = ev.filter((e) => e.severity === 'alarm' && !e.acked_by);
    const operator = ['operator', 'admin'].includes($('who').dataset.role);
    $('alarm-log').replaceChildren(...open.map((e) => {
      const l = li(`${fmtDateTime(e.at)} ${eventText(e.message)} `, 'alarm');
      l.dataset.id = e.id;
      if (operator) {
        const b = document.createElement('button');
        b.textContent = t('alarm.ack');
        b.onclick = async () => {
          try { await api('POST', `/api/v1/events/${e.id}/ack`); loadAlarms(); } catch (err) { fail(err); }
        };
        l.append(b);
      }
      return l;
    }));
    if (!open.length) $('alarm-log').append(li(t('alarm.none')));
  } catch (e) { fail(e); }
}

// Grid requests of the last week (the API's, and the IEC 104 master's limits once measured):
// what was asked and what the EMS holds of it, its window and status, and what the park
// delivered against its baseline (or, without one, the plan active when it was taken); an
// operator gives one from the form.
// A request's delivery interval by interval, under its row (a second click hides it): the
// reference (baseline or plan, net import kW), the measured net import, what was asked off it
// and what was delivered.
function toggleIntervals(tr, intervals) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains('intervals')) { next.remove(); return; }
  const detail = document.createElement('tr');
  detail.className = 'intervals';
  detail.dataset.for = tr.dataset.id;
  const td = document.createElement('td');
  td.colSpan = tr.children.length;
  const table = document.createElement('table');
  table.className = 'table';
  const kw = (x) => (typeof x === 'number' ? x.toFixed(1) : '–');
  table.append(row([t('gr.iv.at'), t('gr.iv.reference'), t('gr.iv.measured'), t('gr.iv.asked'), t('gr.iv.got')], true),
    ...intervals.map((i) => row([fmtTime(i.start, false), kw(i.baseline_kw), kw(i.measured_kw), kw(i.requested_kw), kw(i.delivered_kw)])));
  if (!intervals.length) table.append(row([t('gr.iv.none')]));
  td.append(table);
  detail.append(td);
  tr.after(detail);
}

async function loadRequests() {
  const operator = ['operator', 'admin'].includes($('who').dataset.role);
  $('request-form').hidden = !operator;
  $('rq-note').hidden = !operator;
  try {
    const v = await api('GET', '/api/v1/grid-requests?days=7');
    const list = v.requests.slice().reverse();
    // The intervals open now stay open when the list is made again.
    const open = new Set([...document.querySelectorAll('#grid-requests tr.intervals')].map((x) => x.dataset.for));
    const head = row([t('gr.id'), t('gr.source'), t('gr.ask'), t('gr.window'), t('gr.status'), t('gr.delivered'), t('gr.settlement')], true);
    $('grid-requests').replaceChildren(head, ...list.map((r) => {
      const d = r.delivery || {};
      const measured = typeof d.requested_kwh === 'number';
      const against = d.reference_plan ? t('gr.vsplan').replace('{n}', d.reference_plan) : t('gr.vsbaseline');
      const delivered = measured
        ? `${d.delivered_kwh.toFixed(1)} / ${d.requested_kwh.toFixed(1)} kWh (${(100 * d.share).toFixed(0)} %), ${against}`
        : t('gr.notmeasured');
      const held = Math.abs(r.held_kw - r.kw) > 1e-6 ? ` (${t('gr.held')} ${r.held_kw.toFixed(1)} kW)` : '';
      const tr = row([r.id, r.source, `${t('gr.kind.' + r.kind)} ${r.kw} kW${held}`,
        `${fmtDateTime(r.start, false)} – ${fmtTime(r.end, false)}`, t('gr.status.' + r.status), delivered,
        d.settlement_cny === null || d.settlement_cny === undefined ? '–' : `${d.settlement_cny.toFixed(2)} CNY`]);
      tr.dataset.id = r.id;
      // What the EMS said of it (and why nothing is measured, where nothing is).
      tr.title = `${measured ? r.note : `${r.note}; ${d.why || ''}`} (${t('gr.iv.hint')})`;
      tr.classList.add('clickable');
      tr.onclick = () => toggleIntervals(tr, d.intervals || []);
      return tr;
    }));
    if (!list.length) $('grid-requests').append(row([t('gr.none')]));
    for (const tr of document.querySelectorAll('#grid-requests tr[data-id]')) if (open.has(tr.dataset.id)) tr.click();
  } catch (e) { fail(e); }
}

// Tokens (admin): listed with their role and expiry, created (shown once) and revoked.
async function loadTokens() {
  const admin = $('who').dataset.role === 'admin';
  $('tokens-card').hidden = !admin;
  if (!admin) return;
  try {
    const list = await api('GET', '/api/v1/tokens');
    $('tokens').replaceChildren(row([t('tok.id'), t('tok.label').split(/[,，]/)[0], t('tok.role'), t('tok.created'), t('tok.expires'), ''], true),
      ...list.map((k) => {
        let action = t('tok.revoked');
        if (!k.revoked) {
          action = document.createElement('button');
          action.textContent = t('tok.revoke');
          action.onclick = async () => {
            try { await api('DELETE', `/api/v1/tokens/${k.id}`); say(`${t('msg.saved')}: #${k.id}`, 'ok'); loadTokens(); } catch (e) { fail(e); }
          };
        }
        const r = row([`#${k.id}`, k.label, t('tok.' + k.role), fmtDateTime(k.created, false), k.expires ? fmtDateTime(k.expires, false) : t('tok.never'), action]);
        r.dataset.id = k.id;
        return r;
      }));
  } catch (e) { fail(e); }
}

// History: each month's bill (its terms add up to the total) and each day's energy, cost
// and carbon; the same as CSV from the API.
// The park's day, week (Monday on), month or year so far.
function historyRange(kind) {
  const today = parkDay(0);
  let from = today;
  if (kind === 'week') {
    const d = new Date(`${today}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
    from = d.toISOString().slice(0, 10);
  } else if (kind === 'month') from = `${today.slice(0, 8)}01`;
  else if (kind === 'year') from = `${today.slice(0, 5)}01-01`;
  $('history-from').value = from;
  $('history-to').value = parkDay(1);
  loadHistory();
}

async function loadHistory() {
  const from = $('history-from').value; const to = $('history-to').value;
  $('history-csv').href = `/api/v1/history?from=${from}&to=${to}&format=csv`;
  try {
    // Asked from the first of the month: a month's demand charge is on its peak of the whole
    // month so far, never on the days shown alone.
    const h = await api('GET', `/api/v1/history?from=${from.slice(0, 8)}01&to=${to}`);
    h.days = h.days.filter((d) => d.day >= from);
    const num = (v, d = 2) => v.toFixed(d);
    const numRow = (cells, head) => {
      const r = row(cells, head);
      [...r.children].forEach((c, i) => { if (i > 0) c.className = 'num'; });
      return r;
    };
    const dayRow = (d, sum) => {
      const r = numRow([sum ? t('h.sum') : d.day, `${d.intervals}/${d.intervals_expected}`, num(d.pv_kwh, 1), num(d.import_kwh, 1), num(d.export_kwh, 1),
        num(d.load_kwh + d.ev_kwh, 1), num(d.energy_cny), num(d.export_cny), num(d.wear_cny), num(d.peak_import_kw, 1),
        num(d.scope2_kg, 1), num(d.avoided_kg, 1), pct(d.self_sufficiency)]);
      if (sum) r.className = 'sum';
      return r;
    };
    $('history-months').replaceChildren(
      numRow([t('h.month'), t('h.days'), t('h.energy'), t('h.export'), t('h.demand'), t('h.peak'), t('h.wear'), t('h.total')], true),
      ...h.months.map((m) => {
        const r = numRow([m.month, String(m.days), num(m.energy_cny), m.export_cny > 0.005 ? `−${num(m.export_cny)}` : num(0), num(m.demand_cny), num(m.peak_import_kw, 1), num(m.wear_cny), num(m.total_cny)]);
        r.dataset.month = m.month;
        return r;
      }));
    $('history-notes').textContent = h.notes.map((n) => n[lang]).join(' · ');
    $('history-days').replaceChildren(
      numRow([t('h.day'), t('h.cover'), t('h.pv'), t('h.import'), t('h.exportkwh'), t('h.use'), t('h.energy'), t('h.export'), t('h.wear'), t('h.peak'), t('h.scope2'), t('h.avoided'), t('h.selfsuff')], true),
      ...h.days.map((d) => dayRow(d)), ...(h.days.length > 1 ? [dayRow(periodSum(h.days), true)] : []));
    say('');
  } catch (e) { fail(e); }
}

// The days shown together: energy, money and carbon added, the highest peak, and the share
// of consumption served by PV over the whole period.
function periodSum(days) {
  const s = { intervals: 0, intervals_expected: 0, pv_kwh: 0, import_kwh: 0, export_kwh: 0, load_kwh: 0, ev_kwh: 0,
    energy_cny: 0, export_cny: 0, wear_cny: 0, peak_import_kw: 0, scope2_kg: 0, avoided_kg: 0 };
  let served = 0;
  for (const d of days) {
    for (const k of Object.keys(s)) if (k !== 'peak_import_kw') s[k] += d[k];
    s.peak_import_kw = Math.max(s.peak_import_kw, d.peak_import_kw);
    served += d.self_sufficiency * (d.load_kwh + d.ev_kwh);
  }
  s.self_sufficiency = served / Math.max(s.load_kwh + s.ev_kwh, 1e-9);
  return s;
}

// The plan page opens on today's active plan (the day's list, the active one shown).
async function openPlanPage() {
  if (!$('plan-day').value) $('plan-day').value = parkDay(0);
  await listPlans();
  if (currentPlan) return;
  try {
    const plans = await api('GET', `/api/v1/plans?day=${$('plan-day').value}`);
    const act = plans.find((p) => p.active);
    if (act) viewPlan(act.id);
  } catch (e) { fail(e); }
}

function showPage(name) {
  document.querySelectorAll('.tab').forEach((b) => b.classList.toggle('active', b.dataset.page === name));
  document.querySelectorAll('.page').forEach((p) => { p.hidden = p.id !== 'page-' + name; });
  if (name === 'devices') { loadEvents(); loadTokens(); }
  if (name === 'plan') openPlanPage();
  if (name === 'live') { loadPlanVsActual(); loadAlarms(); loadRequests(); }
  if (name === 'history') {
    // This billing month so far by default.
    if (!$('history-from').value) { $('history-from').value = `${parkDay(0).slice(0, 8)}01`; $('history-to').value = parkDay(1); }
    loadHistory();
  }
}

document.addEventListener('DOMContentLoaded', () => {
  applyLang();
  // A message said in the other language is not left standing.
  $('lang').onclick = () => { lang = lang === 'zh' ? 'en' : 'zh'; localStorage.setItem('pedf.lang', lang); say(''); applyLang(); };
  document.querySelectorAll('.tab').forEach((b) => { b.onclick = () => showPage(b.dataset.page); });
  $('login-form').onsubmit = async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/api/v1/session', { token: $('login-token').value.trim() });
      $('login-token').value = '';
      say('');
      start();
    } catch (err) { say(t('msg.error') + err.message, 'error'); }
  };
  $('logout').onclick = async () => { await api('DELETE', '/api/v1/session').catch(() => {}); showLogin(); };
  $('mode-form').onsubmit = async (e) => {
    e.preventDefault();
    const mode = $('mode-select').value;
    const body = { mode };
    if (mode === 'manual') body.battery_kw = Number($('mode-battery').value || 0);
    try {
      const m = await api('PUT', '/api/v1/mode', body);
      say(`${t('msg.saved')}: ${t('mode.' + m.mode)}`, 'ok');
    } catch (err) { fail(err); }
  };
  $('plan-list').onclick = listPlans;
  $('history-form').onsubmit = (e) => { e.preventDefault(); loadHistory(); };
  document.querySelectorAll('[data-range]').forEach((b) => { b.onclick = () => historyRange(b.dataset.range); });
  $('request-form').onsubmit = async (e) => {
    e.preventDefault();
    // Today's (the park's) window; one that ends at or before its start ends tomorrow.
    const now = live && live.at ? Date.parse(live.at) : Date.now();
    const day = parkDay(0);
    const start = `${day}T${$('rq-from').value}:00${zoneOffset(now)}`;
    let end = `${day}T${$('rq-to').value}:00${zoneOffset(now)}`;
    if (Date.parse(end) <= Date.parse(start)) end = `${parkDay(1)}T${$('rq-to').value}:00${zoneOffset(now + 86400000)}`;
    const body = {
      id: `dash-${day}-${$('rq-from').value.replace(':', '')}-${$('rq-kind').value}`,
      kind: $('rq-kind').value, kw: Number($('rq-kw').value), start, end,
    };
    if ($('rq-price').value) body.price_cny_per_kwh = Number($('rq-price').value);
    try {
      const r = await api('POST', '/api/v1/grid-requests', body);
      say(`${r.id}: ${r.note}`, 'ok');
    } catch (err) { fail(err); }
    loadRequests();
  };
  $('session-form').onsubmit = async (e) => {
    e.preventDefault();
    if (!sessionCharger) return;
    const body = { reason: 'set on the dashboard' };
    if ($('session-kwh').value) body.energy_kwh = Number($('session-kwh').value);
    if ($('session-dep').value) {
      // Today's (the park's) time, or tomorrow's when it has passed.
      const now = live && live.at ? Date.parse(live.at) : Date.now();
      let day = parkDay(0);
      const at = (d) => Date.parse(`${d}T${$('session-dep').value}:00${zoneOffset(now)}`);
      if (at(day) <= now) day = parkDay(1);
      body.departure = `${day}T${$('session-dep').value}:00${zoneOffset(now)}`;
    }
    try {
      await api('PUT', `/api/v1/chargers/${encodeURIComponent(sessionCharger)}/session`, body);
      say(`${t('msg.saved')}: ${sessionCharger}`, 'ok');
    } catch (err) { fail(err); }
  };
  document.querySelectorAll('#charger-actions [data-action]').forEach((b) => {
    b.onclick = async () => {
      if (!sessionCharger) return;
      const body = { action: b.dataset.action, reason: 'from the dashboard' };
      if (b.dataset.action === 'start') body.id_tag = $('charger-tag').value.trim();
      try {
        const r = await api('POST', `/api/v1/chargers/${encodeURIComponent(sessionCharger)}/command`, body);
        say(`${sessionCharger}: ${cmdOutcome(r.outcome)}`, 'ok');
      } catch (err) { fail(err); }
    };
  });
  $('token-form').onsubmit = async (e) => {
    e.preventDefault();
    const body = { label: $('token-label').value.trim(), role: $('token-role').value };
    if ($('token-days').value) body.expires_days = Number($('token-days').value);
    try {
      const r = await api('POST', '/api/v1/tokens', body);
      $('token-new').textContent = t('tok.new') + r.token;
      $('token-label').value = '';
      loadTokens();
    } catch (err) { fail(err); }
  };
  $('plan-form').onsubmit = async (e) => {
    e.preventDefault();
    say(t('msg.planning'), 'ok');
    try {
      const r = await api('POST', '/api/v1/plans', { day: $('plan-day').value });
      say(`${t('msg.saved')}: #${r.id} (${r.strategy})`, 'ok');
      await listPlans();
      viewPlan(r.id);
    } catch (err) { fail(err); }
  };
  $('plan-activate').onclick = async () => {
    if (!currentPlan) return;
    try {
      await api('POST', `/api/v1/plans/${currentPlan.id}/activate`);
      say(`${t('msg.saved')}: #${currentPlan.id}`, 'ok');
      viewPlan(currentPlan.id);
    } catch (err) { fail(err); }
  };
  $('carbon-form').onsubmit = async (e) => {
    e.preventDefault();
    try {
      const r = await api('GET', `/api/v1/carbon?from=${$('carbon-from').value}&to=${$('carbon-to').value}`);
      const out = $('carbon-out');
      out.replaceChildren();
      // What the figures rest on: intervals measured whole against those estimated.
      const dt0 = document.createElement('dt'); dt0.textContent = t('c.intervals');
      const dd0 = document.createElement('dd');
      dd0.textContent = t('c.intervals.v').replace('{m}', r.measured_intervals).replace('{e}', r.estimated_intervals);
      if (r.estimated_intervals > 0) dd0.className = 'alarm';
      out.append(dt0, dd0);
      for (const [k, v] of Object.entries(r.totals || r)) {
        if (typeof v !== 'number') continue;
        const dt = document.createElement('dt'); dt.textContent = t('c.' + k).replace(/^c\./, '');
        const dd = document.createElement('dd'); dd.textContent = Math.abs(v) < 10 ? v.toFixed(4) : v.toFixed(1);
        out.append(dt, dd);
      }
      say('');
    } catch (err) { fail(err); }
  };
  $('cert-issue').onclick = async () => {
    try {
      const r = await api('POST', '/api/v1/certificates', { from: $('carbon-from').value, to: $('carbon-to').value });
      const p = $('cert-out');
      p.replaceChildren();
      p.append(`${r.id}: ${r.stated_t} t CO₂e `);
      // The statement, the signed certificate, the records it covers and the billing
      // meter's intervals it states (for the check).
      for (const [k, file, label] of [['pdf', 'pdf', 'PDF'], ['json', 'json', 'JSON'], ['records', 'records.csv', 'CSV'], ['meter-intervals', 'meter-intervals.csv', 'meter CSV']]) {
        const a = document.createElement('a');
        a.href = `/api/v1/certificates/${r.id}/${k}`; a.textContent = label; a.download = `${r.id}.${file}`;
        p.append(a, ' ');
      }
    } catch (err) { fail(err); }
  };
  start();
  setInterval(() => { if (!$('app').hidden && !$('page-live').hidden) { loadPlanVsActual(); loadRequests(); } }, 60000);
  setInterval(() => { if (!$('app').hidden && !$('page-live').hidden && !document.body.classList.contains('stale')) loadAlarms(); }, 10000);
  setInterval(() => {
    const stale = document.body.classList.contains('stale');
    if (stale || (stream && lastSeen && Date.now() - lastSeen > 5000)) setStale(true);
  }, 1000);
});
