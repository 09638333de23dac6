// The tests' etcd cluster is the lab's (src/lab/etcd.ts); whether etcd is installed here.
import { runs } from './requirements.ts';

export { EtcdCluster, type EtcdNetns } from '../../src/lab/etcd.ts';

export const hasEtcd = (): boolean => runs('etcd');
