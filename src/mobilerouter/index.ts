// The mobile router library (docs/architecture.md): one MobileRouter per mobile network, built by the host agent.
export * from './coa.ts';
export * from './components.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './guestlink.ts';
export * from './messages.ts';
export * from './mobilerouter.ts';
export * from './radvd.ts';
export * from './state.ts';
export * from './types.ts';
