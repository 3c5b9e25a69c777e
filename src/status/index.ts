export { setConditions, transitioned, truncateMessage, type ConditionUpdate } from './conditions.ts';
export { HubWriter, type EventType, type ObjectReference } from './hub-writer.ts';
